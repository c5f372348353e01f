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
