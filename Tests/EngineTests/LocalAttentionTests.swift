import XCTest
import Foundation
import Engine

/// ACmix's fused local attention against a direct double-precision evaluation of its definition (softmax over the
/// reflection-padded kernel×kernel neighbourhood of q·(k_j − pe_j), weighted sum of v_j), and its gradients against
/// finite differences, on odd sizes that leave partial position blocks and stride-2 queries.
final class LocalAttentionTests: XCTestCase {
    func reference(_ qkv: Tensor, _ pe: Tensor, heads: Int, h: Int, w: Int, kernel: Int, stride: Int, scale: Float) -> [Double] {
        let b = qkv.shape[0], nd = qkv.shape[1] / 3, d = nd / heads, pad = kernel / 2
        let ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1
        func reflect(_ i: Int, _ n: Int) -> Int { i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i) }
        func at(_ bi: Int, _ ch: Int, _ y: Int, _ x: Int) -> Double { Double(qkv.data[((bi * 3 * nd + ch) * h + y) * w + x]) }
        var out = [Double](repeating: 0, count: b * nd * ho * wo)
        for bi in 0..<b {
            for hd in 0..<heads {
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        let y = oy * stride, x = ox * stride
                        var logits: [Double] = []
                        var taps: [(Int, Int)] = []
                        for ky in 0..<kernel {
                            for kx in 0..<kernel {
                                let sy = reflect(y + ky - pad, h), sx = reflect(x + kx - pad, w)
                                var l = 0.0
                                for c in 0..<d {
                                    let q = at(bi, hd * d + c, y, x) * Double(scale)
                                    let k = at(bi, nd + hd * d + c, sy, sx) - Double(pe.data[c * h * w + sy * w + sx])
                                    l += q * k
                                }
                                logits.append(l); taps.append((sy, sx))
                            }
                        }
                        let m = logits.max()!, e = logits.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                        for c in 0..<d {
                            var v = 0.0
                            for (j, (sy, sx)) in taps.enumerated() { v += e[j] / z * at(bi, 2 * nd + hd * d + c, sy, sx) }
                            out[((bi * nd + hd * d + c) * ho + oy) * wo + ox] = v
                        }
                    }
                }
            }
        }
        return out
    }

    func testMatchesDefinition() {
        // Maps barely larger than the window's half (4×4 for kernel 7), odd and even sides, both strides.
        for (b, heads, d, h, w, stride) in [(2, 2, 5, 9, 11, 1), (1, 3, 4, 13, 7, 2), (1, 1, 8, 20, 17, 1), (2, 2, 4, 4, 4, 2),
                                            (2, 1, 16, 4, 5, 1), (1, 2, 8, 5, 4, 2), (2, 2, 8, 8, 8, 2), (1, 1, 4, 6, 9, 2),
                                            (2, 4, 2, 16, 16, 1), (2, 4, 4, 16, 16, 2), (2, 4, 8, 8, 8, 2), (2, 4, 16, 4, 4, 2)] {
            let nd = heads * d
            let qkv = randomTensor([b, 3 * nd, h, w], seed: UInt64(h * w), requiresGrad: false)
            let pe = randomTensor([d, h * w], seed: UInt64(h + w), lo: -0.5, hi: 0.5, requiresGrad: false)
            let scale = 1 / Float(d).squareRoot()
            let got = withNoGrad { acmixLocalAttention(qkv, pe, heads: heads, height: h, width: w, kernel: 7, stride: stride, scale: scale) }
            let want = reference(qkv, pe, heads: heads, h: h, w: w, kernel: 7, stride: stride, scale: scale)
            XCTAssertEqual(got.count, want.count)
            for i in 0..<want.count { XCTAssertEqual(Double(got.data[i]), want[i], accuracy: 1e-5, "\(h)x\(w) stride \(stride) at \(i)") }
        }
    }

    func testGradients() {
        for (stride, b, h, w) in [(1, 1, 9, 10), (2, 1, 9, 10), (2, 2, 4, 5), (1, 2, 5, 4), (2, 1, 8, 8)] {
            let (heads, d) = (2, 3)
            let qkv = randomTensor([b, 3 * heads * d, h, w], seed: UInt64(7 + stride))
            let pe = randomTensor([d, h * w], seed: UInt64(9 + stride), lo: -0.5, hi: 0.5)
            gradCheck([qkv, pe]) { acmixLocalAttention($0[0], $0[1], heads: heads, height: h, width: w, kernel: 7, stride: stride, scale: 0.5) }
        }
    }

    /// A batch gives each image what it gets alone (forward, and the gradients of a weighted sum), at the sizes of the
    /// shapes models' stages, both strides.
    func testABatchEqualsItsImagesAlone() {
        for (heads, d, h, w, stride) in [(4, 4, 32, 32, 1), (4, 8, 32, 32, 2), (4, 16, 16, 16, 2), (4, 32, 8, 8, 2), (4, 32, 4, 4, 1),
                                         (4, 2, 16, 16, 1), (4, 4, 16, 16, 2), (4, 8, 8, 8, 2), (4, 16, 4, 4, 2)] {
            let b = 4, nd = heads * d
            let qkv = randomTensor([b, 3 * nd, h, w], seed: UInt64(h * 31 + d))
            let pe = randomTensor([d, h * w], seed: UInt64(h + d), lo: -0.5, hi: 0.5)
            let ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1
            let weights = randomTensor([b, nd, ho, wo], seed: 5, requiresGrad: false)
            func run(_ x: Tensor, _ p: Tensor, _ wt: Tensor) -> (Tensor, [Float], [Float]) {
                let y = acmixLocalAttention(x, p, heads: heads, height: h, width: w, kernel: 7, stride: stride, scale: 0.5)
                (y * wt).sum().backward()
                return (y, x.grad!.array, p.grad!.array)
            }
            let (y, gx, gp) = run(qkv, pe, weights)
            var gpSum = [Float](repeating: 0, count: pe.count)
            for i in 0..<b {
                let xi = Tensor(Array(qkv.array[(i * 3 * nd * h * w)..<((i + 1) * 3 * nd * h * w)]), shape: [1, 3 * nd, h, w], requiresGrad: true)
                let pi = Tensor(pe.array, shape: pe.shape, requiresGrad: true)
                let wi = Tensor(Array(weights.array[(i * nd * ho * wo)..<((i + 1) * nd * ho * wo)]), shape: [1, nd, ho, wo])
                let (yi, gxi, gpi) = run(xi, pi, wi)
                let label = "\(h)x\(w) d \(d) stride \(stride) image \(i)"
                XCTAssertEqual(Array(y.array[(i * nd * ho * wo)..<((i + 1) * nd * ho * wo)]), yi.array, label)
                XCTAssertEqual(Array(gx[(i * 3 * nd * h * w)..<((i + 1) * 3 * nd * h * w)]), gxi, label)
                for j in 0..<gpSum.count { gpSum[j] += gpi[j] }
            }
            for j in 0..<gp.count { XCTAssertEqual(gp[j], gpSum[j], accuracy: 1e-4 * (1 + abs(gpSum[j])), "pe gradient \(h)x\(w) at \(j)") }
        }
    }
}
