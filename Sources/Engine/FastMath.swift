/// Branch-free exp and erfc in plain Swift arithmetic (Horner steps as fused multiply-adds), so the loops that call them auto-vectorise
/// (Foundation's exp/erf are opaque library calls and keep every loop scalar).

/// e^x with relative error ≈ 2 ulp over the float range; underflows to 0 below −87.3.
@inline(__always)
public func fastExp(_ x: Float) -> Float {
    let xc = min(max(x, -87.3), 88.7)
    // Round to nearest by the 1.5·2²³ trick: plain arithmetic, unlike rounded(), which is a libm call.
    let n = (xc * 1.44269504 + 12582912) - 12582912
    let r = xc - n * 0.693359375 + n * 2.12194440e-4      // ln2 split in a high and low part (Cody–Waite)
    // Degree-6 minimax polynomial for e^r on [−ln2/2, ln2/2].
    var p: Float = 1.9875691500e-4
    p = Float(1.3981999507e-3).addingProduct(p, r)
    p = Float(8.3334519073e-3).addingProduct(p, r)
    p = Float(4.1665795894e-2).addingProduct(p, r)
    p = Float(1.6666665459e-1).addingProduct(p, r)
    p = Float(5.0000001201e-1).addingProduct(p, r)
    p = p * r * r + r + 1
    let scale = Float(bitPattern: UInt32(bitPattern: Int32(n) + 127) << 23)
    return x < -87.3 ? 0 : p * scale
}

/// erfc(x) for x ≥ 0 (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7).
@inline(__always)
public func fastErfcNonNegative(_ z: Float) -> Float {
    let t = 1 / (1 + 0.5 * z)
    var p: Float = 0.17087277
    p = Float(-0.82215223).addingProduct(p, t)
    p = Float(1.48851587).addingProduct(p, t)
    p = Float(-1.13520398).addingProduct(p, t)
    p = Float(0.27886807).addingProduct(p, t)
    p = Float(-0.18628806).addingProduct(p, t)
    p = Float(0.09678418).addingProduct(p, t)
    p = Float(0.37409196).addingProduct(p, t)
    p = Float(1.00002368).addingProduct(p, t)
    p = Float(-1.26551223).addingProduct(p, t)
    return t * fastExp(-z * z + p)
}

/// Φ(x), the standard normal CDF, accurate in both tails: 0.5·erfc(−x/√2).
@inline(__always)
public func normalCDF(_ x: Float) -> Float {
    let e = 0.5 * fastErfcNonNegative(abs(x) * 0.70710678118654752)
    return x >= 0 ? 1 - e : e
}

// The same functions eight lanes at a time (explicit SIMD: the scalar forms leave loops scalar where the compiler
// will not vectorise the float → integer step). Same operations in the same order, so lane results equal the
// scalar functions' bit for bit. @_transparent, not @inline(__always): the optimiser declined the latter in the
// larger kernels, and an outlined SIMD function passes its vectors in 128-bit halves (softmax ran 1.4× slower).

/// e^x per lane (see the scalar `fastExp`).
@_transparent
public func fastExp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let xc = x.replacing(with: -87.3, where: x .< -87.3).replacing(with: 88.7, where: x .> 88.7)
    let biased = xc * 1.44269504 + 12582912
    let n = biased - 12582912
    let r = xc - n * 0.693359375 + n * 2.12194440e-4
    var p = SIMD8<Float>(repeating: 1.9875691500e-4)
    p = SIMD8(repeating: 1.3981999507e-3).addingProduct(p, r)
    p = SIMD8(repeating: 8.3334519073e-3).addingProduct(p, r)
    p = SIMD8(repeating: 4.1665795894e-2).addingProduct(p, r)
    p = SIMD8(repeating: 1.6666665459e-1).addingProduct(p, r)
    p = SIMD8(repeating: 5.0000001201e-1).addingProduct(p, r)
    p = p * r * r + r + 1
    // The low bits of biased = 1.5·2²³ + n hold n: 2ⁿ is (n + 127) << 23.
    let bits = (unsafeBitCast(biased, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return (p * unsafeBitCast(bits, to: SIMD8<Float>.self)).replacing(with: 0, where: x .< -87.3)
}

/// e^x, sixteen lanes as two interleaved eight-lane halves (a sixteen-lane function body would be compiled to
/// 128-bit operations when it is not inlined).
@_transparent
func fastExp(_ x: SIMD16<Float>) -> SIMD16<Float> { let (l, h) = halves(x); return joined(fastExp(l), fastExp(h)) }

/// erfc(z) per lane for z ≥ 0 (see the scalar `fastErfcNonNegative`).
@_transparent
public func fastErfcNonNegative(_ z: SIMD8<Float>) -> SIMD8<Float> {
    let t = 1 / (1 + 0.5 * z)
    var p = SIMD8<Float>(repeating: 0.17087277)
    p = SIMD8(repeating: -0.82215223).addingProduct(p, t)
    p = SIMD8(repeating: 1.48851587).addingProduct(p, t)
    p = SIMD8(repeating: -1.13520398).addingProduct(p, t)
    p = SIMD8(repeating: 0.27886807).addingProduct(p, t)
    p = SIMD8(repeating: -0.18628806).addingProduct(p, t)
    p = SIMD8(repeating: 0.09678418).addingProduct(p, t)
    p = SIMD8(repeating: 0.37409196).addingProduct(p, t)
    p = SIMD8(repeating: 1.00002368).addingProduct(p, t)
    p = SIMD8(repeating: -1.26551223).addingProduct(p, t)
    return t * fastExp(-z * z + p)
}

/// Φ(x) per lane (see the scalar `normalCDF`).
@_transparent
public func normalCDF(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let magnitude = unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self)
    let e = 0.5 * fastErfcNonNegative(magnitude * 0.70710678118654752)
    return e.replacing(with: 1 - e, where: x .>= 0)
}

/// e^x for x ≤ 0 per lane: `fastExp` without the overflow clamp, and below −87.3 it returns e^−87.3 ≈ 1.2e−38
/// instead of 0 (for callers that multiply it by something small anyway).
@_transparent
func fastExpNonPositive(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let xc = x.replacing(with: -87.3, where: x .< -87.3)
    let biased = xc * 1.44269504 + 12582912
    let n = biased - 12582912
    let r = xc - n * 0.693359375 + n * 2.12194440e-4
    var p = SIMD8<Float>(repeating: 1.9875691500e-4)
    p = SIMD8<Float>(repeating: 1.3981999507e-3).addingProduct(p, r)
    p = SIMD8<Float>(repeating: 8.3334519073e-3).addingProduct(p, r)
    p = SIMD8<Float>(repeating: 4.1665795894e-2).addingProduct(p, r)
    p = SIMD8<Float>(repeating: 1.6666665459e-1).addingProduct(p, r)
    p = SIMD8<Float>(repeating: 5.0000001201e-1).addingProduct(p, r)
    p = p * r * r + r + 1
    let bits = (unsafeBitCast(biased, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: SIMD8<Float>.self)
}

/// Φ(x) per lane from Abramowitz & Stegun 7.1.26 (|erf error| ≤ 1.5e−7): erfc(z) = t·P(t)·e^(−z²),
/// t = 1/(1 + 0.3275911·z), z = |x|/√2; with e^(−x²/2), which GELU's derivative reuses for φ(x). Cheaper than
/// `normalCDF` (five terms instead of ten, one exponential shared by Φ and φ).
@_transparent
func normalCDFAndGaussian(_ x: SIMD8<Float>) -> (cdf: SIMD8<Float>, gaussian: SIMD8<Float>) {
    let z = unsafeBitCast(unsafeBitCast(x, to: SIMD8<Int32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self) * 0.70710678118654752
    let t = 1 / SIMD8<Float>(repeating: 1).addingProduct(z, 0.3275911)
    var p = SIMD8<Float>(repeating: 1.061405429)
    p = SIMD8<Float>(repeating: -1.453152027).addingProduct(p, t)
    p = SIMD8<Float>(repeating: 1.421413741).addingProduct(p, t)
    p = SIMD8<Float>(repeating: -0.284496736).addingProduct(p, t)
    p = SIMD8<Float>(repeating: 0.254829592).addingProduct(p, t)
    let gaussian = fastExpNonPositive(-(z * z))
    let e = (0.5 * t) * p * gaussian     // Φ(−|x|)
    return (e.replacing(with: 1 - e, where: x .>= 0), gaussian)
}

/// GELU's x·Φ(x) per lane (Φ from `normalCDFAndGaussian`): within 5e−7 of the exact x·Φ(x) everywhere
/// (`ElementwiseKernelTests`), well inside the 1e−6 GELU is held to.
@_transparent
func geluExact(_ x: SIMD8<Float>) -> SIMD8<Float> { x * normalCDFAndGaussian(x).cdf }

/// GELU's derivative Φ(x) + x·φ(x) per lane, φ(x) = e^(−x²/2)/√(2π).
@_transparent
func geluDerivative(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let (cdf, gaussian) = normalCDFAndGaussian(x)
    return cdf + x * gaussian * 0.39894228040143268
}

/// GELU, sixteen lanes as two interleaved eight-lane halves.
@_transparent
func geluExact(_ x: SIMD16<Float>) -> SIMD16<Float> { let (l, h) = halves(x); return joined(geluExact(l), geluExact(h)) }

/// The scalar form of `geluExact` (same operations, same result).
@inline(__always)
func geluExact(_ x: Float) -> Float { geluExact(SIMD8(repeating: x))[0] }
