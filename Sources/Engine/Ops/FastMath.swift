import Dispatch
import Foundation

/// Vectorisable exp and erf (plain scalar code without libm calls, so loops over them auto-vectorise), and
/// the GELU built on them.
///
/// GELU in its exact erf form, x·Φ(x), with erf evaluated by a clamped rational polynomial (Eigen's
/// `generic_fast_erf_float`, |error| ≲ 1e-7 over all floats) instead of libm's scalar `erff`. The polynomial
/// vectorises, which makes this several times faster than `gelu()`; it is not the tanh approximation.

/// erf(x): odd degree-13 / even degree-8 rational on [−4, 4], ±1 outside. Plain scalar code with no calls,
/// so loops over it auto-vectorise.
@inline(__always)
public func fastErf(_ v: Float) -> Float {
    let x = v < -4 ? -4 : (v > 4 ? 4 : v)
    let x2 = x * x
    var p = x2 * -2.72614225801306e-10 + 2.77068142495902e-08
    p = x2 * p + -2.10102402082508e-06
    p = x2 * p + -5.69250639462346e-05
    p = x2 * p + -7.34990630326855e-04
    p = x2 * p + -2.95459980854025e-03
    p = x2 * p + -1.60960333262415e-02
    p = x * p
    var q = x2 * -1.45660718464996e-05 + -2.13374055278905e-04
    q = x2 * q + -1.68282697438203e-03
    q = x2 * q + -7.37332916720468e-03
    q = x2 * q + -1.42647390514189e-02
    return p / q
}

/// e^x to ~1 ulp (Cephes expf: x = n·ln2 + r, degree-6 polynomial for e^r, 2^n from the exponent bits).
/// Inputs are clamped to [−87, 88], so results stay normal: e^−87 ≈ 1.6e−38 stands in for smaller values
/// (softmax's masked logits), which changes no sum at Float precision.
@inline(__always)
public func fastExp(_ v: Float) -> Float {
    let x = v < -87 ? -87 : (v > 88 ? 88 : v)
    // Round x·log2(e) to the nearest integer n with the 1.5·2²³ trick; n then sits in t's low mantissa bits.
    let magic: Float = 12_582_912
    let t = x * 1.44269504088896341 + magic
    let n = t - magic
    let r = x - n * 0.693359375 + n * 2.12194440e-4
    var p: Float = 1.9875691500e-4
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let y = p * r * r + r + 1
    // 2^n: (n + 127) << 23, with n = t.bits − 0x4B400000.
    return y * Float(bitPattern: (t.bitPattern &- 0x4B3F_FF81) &<< 23)
}

/// y[i] = 0.5·x[i]·(1 + erf(x[i]/√2)) for n floats; x and y may alias.
@inline(__always)
func geluKernel(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { let v = x[i]; y[i] = 0.5 * v * (1 + fastErf(v * 0.70710678118654752)) }
}

extension Tensor {
    /// Exact-form GELU (x·Φ(x)) with a vectorised erf; matches `gelu()` to ~1e-7 absolute.
    public func fastGELU() -> Tensor {
        let out = Tensor(uninitialized: shape)
        let x = data, y = out.data
        parallelChunks(count, cost: 16) { s, e in geluKernel(x + s, y + s, e - s) }
        return out.record("gelu", [self]) { g in
            let gx = Tensor(uninitialized: self.shape)
            let xd = self.data, gd = g.data, o = gx.data
            parallelChunks(self.count, cost: 16) { s, e in
                for i in s..<e {
                    let v = xd[i]
                    let cdf = 0.5 * (1 + fastErf(v * 0.70710678118654752))
                    let pdf = fastExp(-0.5 * v * v) * 0.39894228040143268
                    o[i] = gd[i] * (cdf + v * pdf)
                }
            }
            return [gx]
        }
    }
}

// MARK: - LayerNorm

/// Sum of n floats with eight-lane partial sums (a plain float reduction does not vectorise).
@inline(__always)
func laneSum(_ n: Int, _ f: (Int) -> SIMD8<Float>, tail: (Int) -> Float) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= n { acc += f(i); i += 8 }
    var total: Float = 0
    for l in 0..<8 { total += acc[l] }
    while i < n { total += tail(i); i += 1 }
    return total
}

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

/// LayerNorm over the last dim, x [..., D] with weight/bias [D], as `layerNorm` computes it but with
/// vectorised row statistics in Float (two passes: mean, then Σ(x − mean)², so no cancellation). Swin
/// normalises rows of 96…1024 channels twice per block, where the scalar Double loop of `layerNorm` shows.
public func fastLayerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float = 1e-5) -> Tensor {
    let d = x.shape.last!, rows = x.count / d
    precondition(weight.count == d && bias.count == d, "fastLayerNorm: \(x.shape) with weight \(weight.shape)")
    let out = Tensor(uninitialized: x.shape)
    let stats = Tensor(uninitialized: [rows, 2])
    let xd = x.data, y = out.data, w = weight.data, b = bias.data, st = stats.data
    let invD = 1 / Float(d)
    parallelFor(rows, cost: 4 * d) { r in
        let row = xd + r * d, yr = y + r * d
        let mean = laneSum(d, { load8(row + $0) }, tail: { row[$0] }) * invD
        let mv = SIMD8<Float>(repeating: mean)
        let v = laneSum(d, { let t = load8(row + $0) - mv; return t * t }, tail: { (row[$0] - mean) * (row[$0] - mean) }) * invD
        let rstd = 1 / (v + eps).squareRoot()
        st[2 * r] = mean; st[2 * r + 1] = rstd
        for i in 0..<d { yr[i] = (row[i] - mean) * rstd * w[i] + b[i] }
    }
    return out.record("layer_norm", [x, weight, bias]) { g in
        let gx = Tensor(uninitialized: x.shape)
        let gd = g.data, gxd = gx.data, st = stats.data
        let chunks = max(1, min(Threads.count, rows))
        // Per-chunk partial sums for weight and bias, combined after.
        let partial = Tensor(zeros: [chunks, 2, d])
        let pp = partial.data
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let pw = pp + c * 2 * d, pb = pw + d
            for r in (rows * c / chunks)..<(rows * (c + 1) / chunks) {
                let row = xd + r * d, gr = gd + r * d, gxr = gxd + r * d
                let mean = st[2 * r], rstd = st[2 * r + 1]
                var sg: Float = 0, sgx: Float = 0
                for i in 0..<d {
                    let xh = (row[i] - mean) * rstd, gh = gr[i] * w[i]
                    sg += gh; sgx += gh * xh
                    pw[i] += gr[i] * xh; pb[i] += gr[i]
                }
                for i in 0..<d {
                    let xh = (row[i] - mean) * rstd
                    gxr[i] = rstd * (gr[i] * w[i] - invD * sg - xh * invD * sgx)
                }
            }
        }
        let gw = Tensor(zeros: [d]), gb = Tensor(zeros: [d])
        for c in 0..<chunks { for i in 0..<d { gw.data[i] += pp[c * 2 * d + i]; gb.data[i] += pp[c * 2 * d + d + i] } }
        return [x.requiresGrad ? gx : nil, weight.requiresGrad ? gw.reshape(weight.shape) : nil,
                bias.requiresGrad ? gb.reshape(bias.shape) : nil]
    }
}
