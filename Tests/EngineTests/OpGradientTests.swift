import XCTest
import Engine

/// Finite-difference gradient checks, one per op.
final class OpGradientTests: XCTestCase {
    func testBroadcastArithmetic() {
        let a = randomTensor([2, 3, 4], seed: 1), b = randomTensor([3, 1], seed: 2), c = randomTensor([4], seed: 3)
        gradCheck([a, b]) { $0[0] + $0[1] }
        gradCheck([a, b]) { $0[0] - $0[1] }
        gradCheck([a, c]) { $0[0] * $0[1] }
        let d = randomTensor([3, 1], seed: 4, lo: 0.5, hi: 2)
        gradCheck([a, d]) { $0[0] / $0[1] }
        gradCheck([a]) { ($0[0] * 3 + 1) / 2 - 0.5 }
        gradCheck([a]) { 2 - $0[0] }
        gradCheck([a]) { -$0[0] }
    }

    func testUnary() {
        let a = randomTensor([3, 5], seed: 5)
        gradCheck([a]) { $0[0].exp() }
        gradCheck([a]) { $0[0].tanh() }
        gradCheck([a]) { $0[0].sigmoid() }
        gradCheck([a]) { $0[0].gelu() }
        let p = randomTensor([3, 5], seed: 6, lo: 0.5, hi: 2)
        gradCheck([p]) { $0[0].log() }
        gradCheck([p]) { $0[0].sqrt() }
        gradCheck([p]) { $0[0].pow(1.7) }
        // Away from the kink at 0.
        let k = Tensor([-1.5, -0.7, -0.2, 0.3, 0.8, 1.4], shape: [6], requiresGrad: true)
        gradCheck([k]) { $0[0].relu() }
        gradCheck([k]) { $0[0].abs() }
        gradCheck([k]) { $0[0].clamp(min: -1, max: 1) }
    }

    func testGELUIsExactErfForm() {
        let x = Tensor([-3, -1, 0, 0.5, 2], shape: [5])
        // 0.5·x·(1 + erf(x/√2)), values from torch.nn.functional.gelu.
        assertClose(x.gelu(), [-0.0040496, -0.15865526, 0, 0.34573123, 1.9544997], tol: 1e-5)
    }

    func testReductions() {
        let a = randomTensor([2, 3, 4], seed: 7)
        gradCheck([a]) { $0[0].sum(axes: [1]) }
        gradCheck([a]) { $0[0].sum(axes: [0, 2], keepDims: true) }
        gradCheck([a]) { $0[0].mean(axes: [-1]) }
        gradCheck([a]) { $0[0].sum() }
        gradCheck([a]) { $0[0].max(axis: 1) }
        gradCheck([a]) { $0[0].max(axis: 2, keepDims: true) }
        let b = randomTensor([3, 1], seed: 8)
        gradCheck([b]) { $0[0].expand([2, 3, 4]) }
    }

    func testMatmulAndLinear() {
        let a = randomTensor([2, 3, 4], seed: 9), b = randomTensor([2, 4, 5], seed: 10), w = randomTensor([4, 5], seed: 11)
        gradCheck([a, b]) { matmul($0[0], $0[1]) }
        gradCheck([a, w]) { matmul($0[0], $0[1]) }
        let lw = randomTensor([6, 4], seed: 12), lb = randomTensor([6], seed: 13)
        gradCheck([a, lw, lb]) { linear($0[0], $0[1], $0[2]) }
        gradCheck([a, lw]) { linear($0[0], $0[1]) }
    }

    func testConv2d() {
        let x = randomTensor([2, 4, 7, 6], seed: 14)
        // 1×1 (sgemm path), general 3×3 with padding, strided + dilated, grouped, depthwise with multiplier.
        gradCheck([x, randomTensor([5, 4, 1, 1], seed: 15), randomTensor([5], seed: 16)]) { conv2d($0[0], $0[1], $0[2]) }
        gradCheck([x, randomTensor([3, 4, 3, 3], seed: 17)]) { conv2d($0[0], $0[1], padding: (1, 1)) }
        gradCheck([x, randomTensor([3, 4, 3, 2], seed: 18), randomTensor([3], seed: 19)]) {
            conv2d($0[0], $0[1], $0[2], stride: (2, 1), padding: (2, 1), dilation: (2, 1))
        }
        gradCheck([x, randomTensor([6, 2, 3, 3], seed: 20)]) { conv2d($0[0], $0[1], stride: (2, 2), padding: (1, 1), groups: 2) }
        gradCheck([x, randomTensor([8, 1, 3, 3], seed: 21), randomTensor([8], seed: 22)]) {
            conv2d($0[0], $0[1], $0[2], stride: (2, 2), padding: (1, 1), groups: 4)
        }
        gradCheck([x, randomTensor([4, 4, 1, 1], seed: 23)]) { conv2d($0[0], $0[1], stride: (2, 2)) }
        // The ReLU in the epilogue: values and gradients those of conv2d(...).relu(), bit for bit.
        gradCheck([x, randomTensor([3, 4, 3, 3], seed: 24), randomTensor([3], seed: 25)]) { conv2d($0[0], $0[1], $0[2], padding: (1, 1), relu: true) }
        for shape in [[3, 4, 3, 3], [16, 4, 1, 1]] {
            let a = [randomTensor([2, 4, 7, 6], seed: 70), randomTensor(shape, seed: 71), randomTensor([shape[0]], seed: 72)]
            let b = a.map { t -> Tensor in let c = Tensor(t.array, shape: t.shape); c.requiresGrad = true; return c }
            let pad = (shape[2] / 2, shape[3] / 2)
            let fused = conv2d(a[0], a[1], a[2], padding: pad, relu: true), plain = conv2d(b[0], b[1], b[2], padding: pad).relu()
            XCTAssertEqual(fused.array, plain.array)
            let g = randomTensor(fused.shape, seed: 73, requiresGrad: false)
            (fused * g).sum().backward(); (plain * g).sum().backward()
            for k in 0..<3 { XCTAssertEqual(a[k].grad?.array, b[k].grad?.array, "\(shape) input \(k)") }
        }
    }

    /// conv_transpose2d against its definition (every input pixel scatters weight · value into the output), then its
    /// gradients: Mask R-CNN's 2×2 stride-2 upsampling, a padded 3×3 stride 2, and 1×1.
    func testConvTranspose2d() {
        let x = randomTensor([2, 3, 4, 5], seed: 30), w = randomTensor([3, 2, 3, 3], seed: 31), b = randomTensor([2], seed: 32)
        let y = withNoGrad { convTranspose2d(x, w, b, stride: (2, 2), padding: (1, 1)) }
        XCTAssertEqual(y.shape, [2, 2, 7, 9])
        var expected = [Float](repeating: 0, count: y.count)
        for n in 0..<2 { for o in 0..<2 { for i in 0..<63 { expected[(n * 2 + o) * 63 + i] = b.data[o] } } }
        for n in 0..<2 { for c in 0..<3 { for h in 0..<4 { for wi in 0..<5 { for o in 0..<2 { for ki in 0..<3 { for kj in 0..<3 {
            let oh = h * 2 - 1 + ki, ow = wi * 2 - 1 + kj
            guard oh >= 0, oh < 7, ow >= 0, ow < 9 else { continue }
            expected[((n * 2 + o) * 7 + oh) * 9 + ow] += x.data[((n * 3 + c) * 4 + h) * 5 + wi] * w.data[((c * 2 + o) * 3 + ki) * 3 + kj]
        } } } } } } }
        for i in 0..<y.count { XCTAssertEqual(y.data[i], expected[i], accuracy: 1e-5) }
        gradCheck([x, randomTensor([3, 4, 2, 2], seed: 33), randomTensor([4], seed: 34)]) { convTranspose2d($0[0], $0[1], $0[2], stride: (2, 2)) }
        gradCheck([x, w, b]) { convTranspose2d($0[0], $0[1], $0[2], stride: (2, 2), padding: (1, 1)) }
        gradCheck([x, randomTensor([3, 2, 1, 1], seed: 35)]) { convTranspose2d($0[0], $0[1]) }
    }

    func testPooling() {
        // Distinct values so the max is unique under the finite-difference step.
        var rng = SplitMix64(seed: 24)
        let vals = (0..<(2 * 3 * 7 * 6)).map { Float($0) * 0.05 }.shuffled(using: &rng)
        let x = Tensor(vals, shape: [2, 3, 7, 6], requiresGrad: true)
        gradCheck([x]) { $0[0].maxPool2d(kernel: 3, stride: 2, padding: 1) }
        gradCheck([x]) { $0[0].avgPool2d(kernel: 2) }
        gradCheck([x]) { $0[0].avgPool2d(kernel: 3, stride: 2, padding: 1) }
        gradCheck([x]) { $0[0].adaptiveAvgPool2d(3, 4) }
        gradCheck([x]) { $0[0].adaptiveAvgPool2d(1, 1) }
    }

    func testNorms() {
        let x = randomTensor([2, 4, 3, 5], seed: 25, lo: -2, hi: 2)
        let w = randomTensor([4], seed: 26, lo: 0.5, hi: 1.5), b = randomTensor([4], seed: 27)
        gradCheck([x, w, b]) { groupNorm($0[0], groups: 2, weight: $0[1], bias: $0[2]) }
        gradCheck([x, w, b]) {
            batchNorm($0[0], runningMean: Tensor(zeros: [4]), runningVar: Tensor(zeros: [4], value: 1),
                      weight: $0[1], bias: $0[2], training: true)
        }
        let rm = randomTensor([4], seed: 28, requiresGrad: false), rv = randomTensor([4], seed: 29, lo: 0.5, hi: 1.5, requiresGrad: false)
        gradCheck([x, w, b]) { batchNorm($0[0], runningMean: rm, runningVar: rv, weight: $0[1], bias: $0[2], training: false) }
        // BatchNorm (running or batch statistics) + residual + ReLU as one op: the three ops' values and gradients, bit
        // for bit, and the same running statistics.
        let r = randomTensor([2, 4, 3, 5], seed: 33, lo: -2, hi: 2)
        gradCheck([x, w, b, r]) { batchNormEval($0[0], runningMean: rm, runningVar: rv, weight: $0[1], bias: $0[2], residual: $0[3], relu: true) }
        gradCheck([x, w, b, r]) {
            batchNorm($0[0], runningMean: Tensor(zeros: [4]), runningVar: Tensor(zeros: [4], value: 1), weight: $0[1], bias: $0[2],
                      training: true, residual: $0[3], relu: true)
        }
        for (withResidual, relu, training) in [(true, true, false), (false, true, false), (true, false, false), (true, true, true), (false, true, true)] {
            let inputs = [x, w, b, r].map { randomTensor($0.shape, seed: UInt64($0.count) + 50) }
            let copies = inputs.map { t -> Tensor in let c = Tensor(t.array, shape: t.shape); c.requiresGrad = true; return c }
            let (rm1, rv1, rm2, rv2) = (Tensor(rm.array, shape: [4]), Tensor(rv.array, shape: [4]), Tensor(rm.array, shape: [4]), Tensor(rv.array, shape: [4]))
            let fused = batchNorm(inputs[0], runningMean: rm1, runningVar: rv1, weight: inputs[1], bias: inputs[2], training: training,
                                  residual: withResidual ? inputs[3] : nil, relu: relu)
            var plain = batchNorm(copies[0], runningMean: rm2, runningVar: rv2, weight: copies[1], bias: copies[2], training: training)
            if withResidual { plain = plain + copies[3] }
            if relu { plain = plain.relu() }
            XCTAssertEqual(fused.array, plain.array)
            let g = randomTensor(x.shape, seed: 60, requiresGrad: false)
            (fused * g).sum().backward(); (plain * g).sum().backward()
            for k in 0..<(withResidual ? 4 : 3) { XCTAssertEqual(inputs[k].grad?.array, copies[k].grad?.array, "input \(k)") }
            XCTAssertEqual(rm1.array, rm2.array)
            XCTAssertEqual(rv1.array, rv2.array)
        }
        let t = randomTensor([2, 3, 6], seed: 30, lo: -2, hi: 2)
        let lw = randomTensor([6], seed: 31, lo: 0.5, hi: 1.5), lb = randomTensor([6], seed: 32)
        gradCheck([t, lw, lb]) { layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        gradCheck([t]) { layerNorm($0[0], weight: nil, bias: nil) }
    }

    func testBatchNormRunningStatistics() {
        let x = randomTensor([3, 2, 2, 2], seed: 33, requiresGrad: false)
        let rm = Tensor(zeros: [2]), rv = Tensor(zeros: [2], value: 1)
        _ = batchNorm(x, runningMean: rm, runningVar: rv, weight: nil, bias: nil, training: true, momentum: 0.1)
        for c in 0..<2 {
            var vals: [Float] = []
            for n in 0..<3 { for i in 0..<4 { vals.append(x.data[(n * 2 + c) * 4 + i]) } }
            let mean = vals.reduce(0, +) / 12
            let unbiased = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 11
            XCTAssertEqual(rm.data[c], 0.1 * mean, accuracy: 1e-6)
            XCTAssertEqual(rv.data[c], 0.9 + 0.1 * unbiased, accuracy: 1e-5)
        }
    }

    func testSoftmax() {
        let x = randomTensor([2, 3, 4], seed: 34, lo: -3, hi: 3)
        gradCheck([x]) { $0[0].softmax(axis: 1) }
        gradCheck([x]) { $0[0].softmax(axis: -1) }
        gradCheck([x]) { $0[0].logSoftmax(axis: 0) }
        let s = x.softmax(axis: 1)
        for o in 0..<2 { for i in 0..<4 {
            XCTAssertEqual((0..<3).map { s.data[(o * 3 + $0) * 4 + i] }.reduce(0, +), 1, accuracy: 1e-6)
        } }
    }

    func testLayoutOps() {
        let x = randomTensor([2, 3, 4, 5], seed: 35)
        gradCheck([x]) { $0[0].reshape([6, -1]) }
        gradCheck([x]) { $0[0].permute([0, 2, 3, 1]) }
        gradCheck([x]) { $0[0].transpose(1, 3) }
        gradCheck([x]) { $0[0].slice(axis: 2, start: 1, end: 4) }
        gradCheck([x]) { $0[0].slice(axis: 3, start: 0, end: 5, step: 2) }
        gradCheck([x]) { $0[0].indexSelect(axis: 1, [2, 0, 2, 1]) }
        gradCheck([x]) { $0[0].roll(shifts: [-3, 2], axes: [2, 3]) }
        gradCheck([x]) { $0[0].pad([(0, 0), (1, 0), (0, 2), (1, 1)], value: 0.5) }
        gradCheck([x]) { $0[0].reflectionPad2d(left: 3, right: 1, top: 2, bottom: 3) }
        let y = randomTensor([2, 1, 4, 5], seed: 36)
        gradCheck([x, y]) { concat([$0[0], $0[1]], axis: 1) }
    }

    func testResize() {
        let x = randomTensor([1, 2, 4, 5], seed: 37)
        gradCheck([x]) { $0[0].resizeBilinear(7, 3) }
        gradCheck([x]) { $0[0].resizeBilinear(8, 10) }
        gradCheck([x]) { $0[0].resizeNearest(8, 3) }
        // The fused nearest resize gives the values and gradients (bit for bit) of the gathers it replaced.
        for (oh, ow) in [(8, 10), (8, 3), (3, 7)] {
            let a = randomTensor([2, 3, 4, 5], seed: 40), b = randomTensor([2, 3, 4, 5], seed: 40)
            let rows = (0..<oh).map { min(Int(Float($0) * 4 / Float(oh)), 3) }, cols = (0..<ow).map { min(Int(Float($0) * 5 / Float(ow)), 4) }
            let ya = a.resizeNearest(oh, ow), yb = b.indexSelect(axis: 2, rows).indexSelect(axis: 3, cols)
            XCTAssertEqual(ya.array, yb.array)
            let g = randomTensor(ya.shape, seed: 41, requiresGrad: false)
            (ya * g).sum().backward(); (yb * g).sum().backward()
            XCTAssertEqual(a.grad?.array, b.grad?.array)
        }
    }

    func testDropPathAndDropout() {
        EngineRandom.seed(1)
        let x = randomTensor([4, 3], seed: 38)
        XCTAssert(x.dropout(0.5, training: false) === x)
        let y = x.dropPath(0.5, training: true)
        for n in 0..<4 {
            let row = (0..<3).map { y.data[n * 3 + $0] / x.data[n * 3 + $0] }
            XCTAssert(row.allSatisfy { abs($0 - row[0]) < 1e-6 } && (abs(row[0]) < 1e-6 || abs(row[0] - 2) < 1e-6))
        }
        y.sum().backward()
        XCTAssertNotNil(x.grad)
    }

    func testLosses() {
        let logits = randomTensor([2, 4, 3], seed: 39, lo: -2, hi: 2)
        let target: [Int32] = [0, 3, 255, 1, 2, 2]
        gradCheck([logits]) { crossEntropy($0[0], target, ignoreIndex: 255) }
        gradCheck([logits]) { crossEntropy($0[0], target, ignoreIndex: 255, weight: [1, 0.5, 2, 1]) }
        let t = Tensor([0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0], shape: [2, 4, 3])
        gradCheck([logits]) { binaryCrossEntropyWithLogits($0[0], t) }
        gradCheck([logits]) { sigmoidFocalLoss($0[0], t) }
        let k = Tensor([-1.5, -0.7, -0.2, 0.3, 0.8, 1.4], shape: [6], requiresGrad: true)
        let z = Tensor([0, 0, 0, 0, 0, 0], shape: [6])
        gradCheck([k]) { l1Loss($0[0], z) }
        gradCheck([k]) { smoothL1Loss($0[0], z, beta: 0.5) }
    }

    func testLossValuesAgainstFormulas() {
        // Cross-entropy: mean over non-ignored of logsumexp − x_t.
        let x = Tensor([1, 2, 3, 0, 0, 0], shape: [2, 3])
        let ce = crossEntropy(x, [2, 255], ignoreIndex: 255).item
        XCTAssertEqual(ce, Float(log(exp(1.0) + exp(2.0) + exp(3.0)) - 3), accuracy: 1e-6)
        // Focal: α·(1−p)^γ·(−log p) for a positive, (1−α)·p^γ·(−log(1−p)) for a negative.
        let f = sigmoidFocalLoss(Tensor([0.3, -0.4], shape: [2]), Tensor([1, 0], shape: [2]), reduction: .none)
        let p1 = 1 / (1 + exp(-0.3)), p2 = 1 / (1 + exp(0.4))
        XCTAssertEqual(Double(f.data[0]), 0.25 * pow(1 - p1, 2) * -log(p1), accuracy: 1e-6)
        XCTAssertEqual(Double(f.data[1]), 0.75 * pow(p2, 2) * -log(1 - p2), accuracy: 1e-6)
        XCTAssertEqual(smoothL1Loss(Tensor([0.2, 3], shape: [2]), Tensor([0, 0], shape: [2]), beta: 1, reduction: .sum).item,
                       0.5 * 0.04 + 2.5, accuracy: 1e-6)
    }
}

/// The fused ACmix attention op, against finite differences (its parity with the authors' module is in BackbonesTests).
final class LocalAttentionGradientTests: XCTestCase {
    func testGradients() {
        for stride in [1, 2] {
            let qkv = randomTensor([2, 3 * 2 * 3, 5, 6], seed: 40 + UInt64(stride))   // 2 heads of 3 channels
            let pe = randomTensor([3, 30], seed: 50)
            gradCheck([qkv, pe]) {
                acmixLocalAttention($0[0], $0[1], heads: 2, height: 5, width: 6, kernel: 5, stride: stride, scale: 0.7)
            }
        }
    }
}

/// A convolution whose column matrix is cut into strips (one output row each) against direct summation.
final class ConvStripTests: XCTestCase {
    func testStripMinedConvMatchesDirectSum() {
        let (c, h, w, o) = (512, 3, 1000, 2)     // k·Wo = 4.6 M floats > one strip's budget: three strips
        let x = randomTensor([1, c, h, w], seed: 60), wt = randomTensor([o, c, 3, 3], seed: 61)
        let y = conv2d(x, wt, padding: (1, 1))
        let r = randomTensor(y.shape, seed: 62, requiresGrad: false)
        (y * r).sum().backward()
        let xd = x.data, wd = wt.data, rd = r.data
        for oc in 0..<o { for oy in 0..<h { for ox in stride(from: 0, to: w, by: 97) {
            var acc = 0.0
            for ic in 0..<c { for ky in 0..<3 { for kx in 0..<3 {
                let iy = oy + ky - 1, ix = ox + kx - 1
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                acc += Double(xd[(ic * h + iy) * w + ix]) * Double(wd[((oc * c + ic) * 3 + ky) * 3 + kx])
            } } }
            XCTAssertEqual(Double(y.data[(oc * h + oy) * w + ox]), acc, accuracy: 1e-3)
        } } }
        // dL/dw[oc, ic, ky, kx] = Σ_y,x r[oc, y, x]·x[ic, y+ky−1, x+kx−1], checked for a few weights.
        for (oc, ic, ky, kx) in [(0, 0, 0, 0), (1, 511, 2, 2), (0, 300, 1, 0)] {
            var acc = 0.0
            for oy in 0..<h { for ox in 0..<w {
                let iy = oy + ky - 1, ix = ox + kx - 1
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                acc += Double(rd[(oc * h + oy) * w + ox]) * Double(xd[(ic * h + iy) * w + ix])
            } }
            XCTAssertEqual(Double(wt.grad!.data[((oc * c + ic) * 3 + ky) * 3 + kx]), acc, accuracy: 1e-2)
        }
        // dL/dx at an interior and an edge pixel.
        for (ic, iy, ix) in [(5, 1, 500), (511, 0, 999)] {
            var acc = 0.0
            for oc in 0..<o { for ky in 0..<3 { for kx in 0..<3 {
                let oy = iy - ky + 1, ox = ix - kx + 1
                guard oy >= 0, oy < h, ox >= 0, ox < w else { continue }
                acc += Double(rd[(oc * h + oy) * w + ox]) * Double(wd[((oc * c + ic) * 3 + ky) * 3 + kx])
            } } }
            XCTAssertEqual(Double(x.grad!.data[(ic * h + iy) * w + ix]), acc, accuracy: 1e-4)
        }
    }
}
