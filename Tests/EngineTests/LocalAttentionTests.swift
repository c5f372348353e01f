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
        for (b, heads, d, h, w, stride) in [(2, 2, 5, 9, 11, 1), (1, 3, 4, 13, 7, 2), (1, 1, 8, 20, 17, 1)] {
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
        for stride in [1, 2] {
            let (heads, d, h, w) = (2, 3, 9, 10)
            let qkv = randomTensor([1, 3 * heads * d, h, w], seed: UInt64(7 + stride))
            let pe = randomTensor([d, h * w], seed: UInt64(9 + stride), lo: -0.5, hi: 0.5)
            gradCheck([qkv, pe]) { acmixLocalAttention($0[0], $0[1], heads: heads, height: h, width: w, kernel: 7, stride: stride, scale: 0.5) }
        }
    }
}
