import Engine
import Foundation
import XCTest

/// Gradient checks and layout checks for the fused Swin/ACmix window kernels (Sources/Engine/Ops/WindowOps.swift).
final class WindowOpsTests: XCTestCase {
    func testPadShiftAndInverse() {
        let x = randomTensor([2, 3, 5, 4], seed: 11)
        gradCheck([x]) { $0[0].windowPadShift(height: 4, width: 6, shift: 1) }
        let y = randomTensor([2, 4, 6, 4], seed: 12)
        gradCheck([y]) { $0[0].windowUnshiftCrop(height: 3, width: 5, shift: 1) }
        // pad + roll(−s) equals the engine's pad then roll; the inverse restores x.
        let viaOps = x.pad([(0, 0), (0, 1), (0, 1), (0, 0)]).roll(shifts: [-1, -1], axes: [1, 2])
        let fused = x.windowPadShift(height: 4, width: 6, shift: 1)
        XCTAssertEqual(fused.array, viaOps.array)
        XCTAssertEqual(fused.windowUnshiftCrop(height: 3, width: 5, shift: 1).array, x.array)
    }

    /// Reference composition: partition, per-head attention with bias and mask, merge — from basic ops.
    func composed(_ qkv: Tensor, _ table: Tensor, heads: Int, ws: Int, scale: Float, mask: Tensor?) -> Tensor {
        let (b, hp, wp, c3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3])
        let c = c3 / 3, hd = c / heads, n = ws * ws, nW = (hp / ws) * (wp / ws)
        let win = qkv.reshape([b, hp / ws, ws, wp / ws, ws, c3]).permute([0, 1, 3, 2, 4, 5]).reshape([b * nW, n, 3, heads, hd])
            .permute([2, 0, 3, 1, 4])                                    // 3, B·nW, heads, N, hd
        let q = win.slice(axis: 0, start: 0, end: 1).reshape([b * nW, heads, n, hd]) * scale
        let k = win.slice(axis: 0, start: 1, end: 2).reshape([b * nW, heads, n, hd])
        let v = win.slice(axis: 0, start: 2, end: 3).reshape([b * nW, heads, n, hd])
        let idx = swinRelativePositionIndex(window: ws).map(Int.init)
        let bias = table.indexSelect(axis: 0, idx).reshape([n, n, heads]).permute([2, 0, 1])
        var s = matmul(q, k.transpose(2, 3)) + bias
        if let mask { s = (s.reshape([b, nW, heads, n, n]) + mask.reshape([1, nW, 1, n, n])).reshape([b * nW, heads, n, n]) }
        let o = matmul(s.softmax(axis: -1), v).transpose(1, 2).reshape([b, hp / ws, wp / ws, ws, ws, c])
        return o.permute([0, 1, 3, 2, 4, 5]).reshape([b, hp, wp, c])
    }

    func testWindowAttentionMatchesCompositionAndGradients() {
        let ws = 2, heads = 2
        let qkv = randomTensor([2, 4, 6, 3 * 4], seed: 21)
        let table = randomTensor([(2 * ws - 1) * (2 * ws - 1), heads], seed: 22, lo: -0.5, hi: 0.5)
        let mask = swinShiftedWindowMask(height: 4, width: 6, window: ws, shift: 1)
        let idx = swinRelativePositionIndex(window: ws)
        for m in [nil, mask] {
            let fused = withNoGrad { windowAttention(qkv, heads: heads, window: ws, scale: 0.7, biasTable: table, relativeIndex: idx, mask: m) }
            let ref = withNoGrad { composed(qkv, table, heads: heads, ws: ws, scale: 0.7, mask: m) }
            for i in 0..<ref.count { XCTAssertEqual(fused.data[i], ref.data[i], accuracy: 1e-5) }
            gradCheck([qkv, table]) {
                windowAttention($0[0], heads: heads, window: ws, scale: 0.7, biasTable: $0[1], relativeIndex: idx, mask: m)
            }
        }
    }

    func testWeightedSum() {
        let a = randomTensor([2, 3, 4], seed: 51), b = randomTensor([2, 3, 4], seed: 52)
        let wa = randomTensor([1], seed: 53), wb = randomTensor([1], seed: 54)
        gradCheck([a, wa, b, wb]) { weightedSum($0[0], $0[1], $0[2], $0[3]) }
    }

    func testACmixConvPathMatchesConvOpsAndGradients() {
        let heads = 2, hd = 3, c = heads * hd
        let qkv = randomTensor([2, 4, 5, 3 * c], seed: 31)
        let fcW = randomTensor([9, 3 * heads, 1, 1], seed: 32)
        let fcB = randomTensor([9], seed: 33)
        let depW = randomTensor([c, 9, 3, 3], seed: 34)
        // The authors' form: (B, 3·heads, hd, HW) → fc (1x1 conv) → (B, hd·9, H, W) → grouped 3x3 conv.
        let (b, h, w) = (2, 4, 5)
        let heads3 = qkv.reshape([b, h * w, 3 * heads, hd]).permute([0, 2, 3, 1])
        let f = conv2d(heads3, fcW, fcB).transpose(1, 2).reshape([b, hd * 9, h, w])
        let ref = withNoGrad { conv2d(f, depW, nil, padding: (1, 1), groups: hd).permute([0, 2, 3, 1]) }
        let fused = withNoGrad { acmixConvPath(qkv, heads: heads, fcWeight: fcW, fcBias: fcB, depWeight: depW) }
        XCTAssertEqual(fused.shape, [b, h, w, c])
        for i in 0..<ref.count { XCTAssertEqual(fused.data[i], ref.data[i], accuracy: 1e-4) }
        gradCheck([qkv, fcW, fcB, depW]) { acmixConvPath($0[0], heads: heads, fcWeight: $0[1], fcBias: $0[2], depWeight: $0[3]) }
    }

    /// ACmix-ResNet's fc in the shift convolution's layout equals the authors' conv then permute, forward and both
    /// gradients, on sizes where each (image, channel) GEMM is large enough to split and where it is not; the weight
    /// gradient is the same at one and two threads.
    func testACmixHeadMixMatchesConvThenPermute() {
        let savedThreads = Threads.count
        defer { Threads.count = savedThreads }
        Threads.count = 2
        for (b, g, d, p) in [(2, 12, 5, 7), (1, 6, 3, 4096), (3, 12, 16, 33)] {
            let x = randomTensor([b, g, d, p], seed: 41), w = randomTensor([9, g, 1, 1], seed: 42)
            let gy = randomTensor([b, d, 9, p], seed: 43, requiresGrad: false)
            let ref = conv2d(x, w).permute([0, 2, 1, 3])
            ref.backward(gy)
            let (rx, rw) = (x.grad!.array, w.grad!.array)
            x.grad = nil; w.grad = nil
            let y = acmixHeadMix(x, w)
            XCTAssertEqual(y.shape, [b, d, 9, p])
            y.backward(gy)
            for (name, a, e) in [("forward", y.array, ref.array), ("input gradient", x.grad!.array, rx), ("weight gradient", w.grad!.array, rw)] {
                let scale = e.map(abs).max()!
                XCTAssertLessThan(zip(a, e).map { abs($0 - $1) }.max()! / scale, 1e-5, "\([b, g, d, p]): \(name)")
            }
            let twoThreads = w.grad!.array
            w.grad = nil
            Threads.count = 1
            acmixHeadMix(x, w).backward(gy)
            Threads.count = 2
            XCTAssertEqual(w.grad!.array, twoThreads, "\([b, g, d, p]): weight gradient depends on the thread count")
        }
        gradCheck([randomTensor([2, 6, 3, 5], seed: 44), randomTensor([9, 6, 1, 1], seed: 45)]) { acmixHeadMix($0[0], $0[1]) }
    }

    /// Inference takes the channels-last kernel (tiles of three pixels × three heads × eight channels, overlapping at
    /// a row's end and at the last heads) where heads have a multiple of 8 channels; training the planar one. Both
    /// must agree on every shape class: fewer than three heads or columns, heads not a multiple of three, one to four
    /// groups of eight channels, no bias, batch 2.
    func testACmixConvPathChannelsLastMatchesPlanarForm() {
        for (b, h, w, heads, hd, bias) in [(2, 5, 7, 3, 8, true), (1, 3, 4, 4, 16, true), (1, 6, 2, 2, 8, true),
                                           (2, 4, 9, 3, 24, false), (1, 2, 3, 5, 8, true), (1, 7, 7, 6, 32, true)] {
            let c = heads * hd
            let qkv = randomTensor([b, h, w, 3 * c], seed: UInt64(81 + hd))
            let fcW = randomTensor([9, 3 * heads, 1, 1], seed: 82), fcB = bias ? randomTensor([9], seed: 83) : nil
            let depW = randomTensor([c, 9, 3, 3], seed: 84)
            let planar = acmixConvPath(qkv, heads: heads, fcWeight: fcW, fcBias: fcB, depWeight: depW)
            XCTAssertNotNil(planar.node, "with gradients the planar form runs")
            let channelsLast = withNoGrad { acmixConvPath(qkv, heads: heads, fcWeight: fcW, fcBias: fcB, depWeight: depW) }
            XCTAssertEqual(channelsLast.shape, planar.shape)
            for i in 0..<planar.count {
                XCTAssertEqual(channelsLast.data[i], planar.data[i], accuracy: 1e-5 * max(1, abs(planar.data[i])),
                               "b \(b) \(h)x\(w) heads \(heads) hd \(hd) at \(i)")
            }
        }
    }
}

/// The engine's vectorisable exp and normal CDF (behind exp, sigmoid, softmax, GELU) against libm.
final class FastMathTests: XCTestCase {
    func testNormalCDFMatchesLibmErf() {
        var worst: Float = 0
        var x: Float = -8
        while x <= 8 { worst = max(worst, abs(normalCDF(x) - 0.5 * (1 + erf(x / Float(2).squareRoot())))); x += 0.001 }
        XCTAssertLessThan(worst, 1e-6)
    }

    func testFastExpMatchesLibm() {
        var worst: Float = 0
        var x: Float = -87
        while x <= 88 { worst = max(worst, abs(fastExp(x) - Foundation.exp(x)) / Foundation.exp(x)); x += 0.0137 }
        XCTAssertLessThan(worst, 3e-7)
        XCTAssertEqual(fastExp(0), 1)
        XCTAssertLessThan(fastExp(-1000), 1e-37)
    }
}

/// The blocked transpose behind the ACmix layout changes, on shapes with and without 4-multiples.
final class TransposeBlockTests: XCTestCase {
    func testACmixConvPathOnOddSizesMatchesConvOps() {
        // 7×9 and 6×13 maps, 3 heads of 5 channels: every transpose has leftover rows and columns.
        for (h, w) in [(7, 9), (6, 13)] {
            let heads = 3, hd = 5, c = heads * hd
            let qkv = randomTensor([1, h, w, 3 * c], seed: 71, requiresGrad: false)
            let fcW = randomTensor([9, 3 * heads, 1, 1], seed: 72, requiresGrad: false)
            let fcB = randomTensor([9], seed: 73, requiresGrad: false)
            let depW = randomTensor([c, 9, 3, 3], seed: 74, requiresGrad: false)
            let heads3 = qkv.reshape([1, h * w, 3 * heads, hd]).permute([0, 2, 3, 1])
            let f = conv2d(heads3, fcW, fcB).transpose(1, 2).reshape([1, hd * 9, h, w])
            let ref = conv2d(f, depW, nil, padding: (1, 1), groups: hd).permute([0, 2, 3, 1])
            let fused = acmixConvPath(qkv, heads: heads, fcWeight: fcW, fcBias: fcB, depWeight: depW)
            for i in 0..<ref.count { XCTAssertEqual(fused.data[i], ref.data[i], accuracy: 1e-4) }
        }
    }
}
