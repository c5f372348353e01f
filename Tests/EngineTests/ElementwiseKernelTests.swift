import XCTest
import Foundation
import Engine

/// The vectorised elementwise kernels (GELU, softmax, LayerNorm, sigmoid) against double-precision references, on
/// lengths that exercise the sixteen-lane, eight-lane and scalar-tail paths.
final class ElementwiseKernelTests: XCTestCase {
    /// GELU is held to the exact erf form within 1e-6 absolute, everywhere (tails included).
    /// permute against the definition (output index → input index), on shapes that take the tiled transpose (NCHW →
    /// NHWC, [N, C, L] → [N, L, C], with partial tiles and size-1 dims) and ones that take the general path.
    func testPermuteMatchesItsDefinition() {
        let cases: [([Int], [Int])] = [([2, 37, 5, 41], [0, 2, 3, 1]), ([3, 70, 33], [0, 2, 1]), ([1, 720, 9, 13], [0, 2, 3, 1]),
                                       ([64, 96], [1, 0]), ([2, 1, 33, 40], [0, 3, 2, 1]), ([2, 3, 4, 5], [3, 1, 0, 2]),
                                       ([4, 1, 6], [2, 0, 1])]
        for (shape, order) in cases {
            let count = shape.reduce(1, *)
            let x = Tensor((0..<count).map { Float($0) }, shape: shape)
            let y = x.permute(order)
            XCTAssertEqual(y.shape, order.map { shape[$0] })
            var inStrides = [Int](repeating: 1, count: shape.count)
            for d in stride(from: shape.count - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * shape[d + 1] }
            var bad = 0
            for i in 0..<count {
                var rem = i, src = 0
                for d in stride(from: order.count - 1, through: 0, by: -1) {
                    let extent = shape[order[d]]
                    src += (rem % extent) * inStrides[order[d]]
                    rem /= extent
                }
                if y.data[i] != Float(src) { bad += 1 }
            }
            XCTAssertEqual(bad, 0, "permute \(order) of \(shape)")
        }
    }

    func testGELUWithinOneMillionthOfExactErf() {
        let n = 200_003
        let xs = (0..<n).map { Float(-12 + 24 * Double($0) / Double(n - 1)) }
        let y = withNoGrad { Tensor(xs, shape: [n]).gelu() }
        var worst = 0.0
        for (i, x) in xs.enumerated() {
            let exact = 0.5 * Double(x) * (1 + Foundation.erf(Double(x) / 2.0.squareRoot()))
            worst = max(worst, abs(Double(y.data[i]) - exact))
        }
        XCTAssertLessThan(worst, 1e-6)
    }

    /// Φ(x) + x·φ(x) within 1e-6 absolute, everywhere, on the eight-lane path and the scalar tail.
    func testGELUGradient() {
        let n = 100_003
        let xs = (0..<n).map { Float(-12 + 24 * Double($0) / Double(n - 1)) }
        let x = Tensor(xs, shape: [n], requiresGrad: true)
        x.gelu().sum().backward()
        var worst = 0.0
        for (i, v) in xs.enumerated() {
            let d = Double(v)
            let exact = 0.5 * (1 + Foundation.erf(d / 2.0.squareRoot())) + d * Foundation.exp(-0.5 * d * d) / (2 * Double.pi).squareRoot()
            worst = max(worst, abs(Double(x.grad!.data[i]) - exact))
        }
        XCTAssertLessThan(worst, 1e-6)
    }

    func testSoftmaxAndLogSoftmaxRows() {
        for cols in [1, 7, 8, 23, 96, 100] {
            let rows = 5
            let vals = (0..<(rows * cols)).map { Float(($0 * 7919) % 211) / 20 - 5 }
            let x = Tensor(vals, shape: [rows, cols])
            let s = withNoGrad { x.softmax(axis: -1) }, ls = withNoGrad { x.logSoftmax(axis: -1) }
            for r in 0..<rows {
                let row = vals[(r * cols)..<((r + 1) * cols)].map(Double.init)
                let m = row.max()!, z = row.map { Foundation.exp($0 - m) }.reduce(0, +)
                for j in 0..<cols {
                    let p = Foundation.exp(row[j] - m) / z
                    XCTAssertEqual(Double(s.data[r * cols + j]), p, accuracy: 1e-6, "cols \(cols)")
                    XCTAssertEqual(Double(ls.data[r * cols + j]), Foundation.log(p), accuracy: 1e-5, "cols \(cols)")
                }
            }
        }
    }

    func testLayerNormRows() {
        for d in [5, 8, 96, 100] {
            let rows = 4
            let vals = (0..<(rows * d)).map { Float(($0 * 104_729) % 97) / 13 - 3 }
            let w = (0..<d).map { 1 + Float($0 % 5) / 10 }, b = (0..<d).map { Float($0 % 3) / 10 - 0.1 }
            let y = withNoGrad { layerNorm(Tensor(vals, shape: [rows, d]), weight: Tensor(w, shape: [d]), bias: Tensor(b, shape: [d])) }
            for r in 0..<rows {
                let row = vals[(r * d)..<((r + 1) * d)].map(Double.init)
                let mean = row.reduce(0, +) / Double(d)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d)
                for j in 0..<d {
                    let want = (row[j] - mean) / (variance + 1e-5).squareRoot() * Double(w[j]) + Double(b[j])
                    XCTAssertEqual(Double(y.data[r * d + j]), want, accuracy: 1e-5, "d \(d)")
                }
            }
        }
    }

    func testSigmoidAndExp() {
        let xs = (0..<1001).map { Float($0) / 10 - 50 }
        let x = Tensor(xs, shape: [1001])
        let s = withNoGrad { x.sigmoid() }, e = withNoGrad { x.exp() }
        for (i, v) in xs.enumerated() {
            XCTAssertEqual(Double(s.data[i]), 1 / (1 + Foundation.exp(-Double(v))), accuracy: 1e-7)
            let ex = Foundation.exp(Double(v))
            XCTAssertEqual(Double(e.data[i]), ex, accuracy: 3e-7 * ex)
        }
    }
}

/// The no-grad max pool (separable, no argmax) against the recording one, on sizes with partial windows.
final class MaxPoolFastPathTests: XCTestCase {
    func testNoGradMatchesRecordingPath() {
        for (h, w, k, s, p) in [(17, 12, 3, 2, 1), (8, 9, 2, 2, 0), (10, 10, 3, 1, 1), (112, 112, 3, 2, 1)] {
            let x = randomTensor([2, 3, h, w], seed: UInt64(h * w + k))
            let fast = withNoGrad { x.maxPool2d(kernel: k, stride: s, padding: p) }
            let slow = x.maxPool2d(kernel: k, stride: s, padding: p)
            XCTAssertNotNil(slow.node)
            XCTAssertEqual(fast.shape, slow.shape)
            XCTAssertEqual(fast.array, slow.array, "\(h)x\(w) k\(k) s\(s) p\(p)")
        }
    }

    /// The recording path's values and argmax (through the gradient) against PyTorch's scalar loop, on inputs with
    /// ties, NaN, -inf windows and widths that leave partial eight-column blocks.
    func testRecordingPathMatchesPyTorchLoop() {
        for (h, w, k, s, p) in [(17, 12, 3, 2, 1), (8, 9, 2, 2, 0), (10, 21, 3, 1, 1), (13, 19, 5, 3, 2), (96, 96, 3, 2, 1)] {
            var rng = SplitMix64(seed: UInt64(h * 100 + w))
            let values: [Float] = [0, -0.0, 1, 1, -1, .nan, -.infinity, 2, 0.5]
            let xs = (0..<(2 * h * w)).map { _ in values[Int(rng.next() % UInt64(values.count))] }
            let x = Tensor(xs, shape: [1, 2, h, w])
            x.requiresGrad = true
            let y = x.maxPool2d(kernel: k, stride: s, padding: p)
            let ho = y.shape[2], wo = y.shape[3]
            var refY = [Float](), refGrad = [Float](repeating: 0, count: xs.count)
            for plane in 0..<2 {
                for oh in 0..<ho {
                    for ow in 0..<wo {
                        let r0 = max(0, oh * s - p), r1 = min(h, oh * s - p + k), c0 = max(0, ow * s - p), c1 = min(w, ow * s - p + k)
                        var best = -Float.infinity, bi = plane * h * w + r0 * w + c0
                        for r in r0..<r1 {
                            for c in c0..<c1 {
                                let v = xs[plane * h * w + r * w + c]
                                if v > best || v.isNaN { best = v; bi = plane * h * w + r * w + c }
                            }
                        }
                        refY.append(best)
                        refGrad[bi] += Float(refY.count)
                    }
                }
            }
            let got = y.array
            XCTAssertEqual(got.count, refY.count)
            for (a, b) in zip(got, refY) where !(a.isNaN && b.isNaN) {
                XCTAssertEqual(a.bitPattern, b.bitPattern, "\(h)x\(w) k\(k) s\(s) p\(p)")
            }
            (y * Tensor((1...refY.count).map(Float.init), shape: y.shape)).sum().backward()
            XCTAssertEqual(x.grad!.array, refGrad, "\(h)x\(w) k\(k) s\(s) p\(p)")
        }
    }
}
