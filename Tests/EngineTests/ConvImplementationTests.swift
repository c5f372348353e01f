import XCTest
import Engine

/// oneDNN's convolutions (plain and blocked layouts, sliced over one or two threads, bias and fused ReLU) against the
/// engine's own kernels, which the finite-difference checks in OpGradientTests cover. Every pass, to 1e-4.
final class ConvImplementationTests: XCTestCase {
    struct Case { var x: [Int], w: [Int], stride = (1, 1), padding = (0, 0), dilation = (1, 1), groups = 1 }

    /// Shapes big enough to be split (≥ 2^20 multiply-adds) and small odd ones that are not.
    let cases: [Case] = [
        Case(x: [1, 32, 24, 24], w: [48, 32, 3, 3], padding: (1, 1)),
        Case(x: [2, 32, 20, 20], w: [64, 32, 3, 3], stride: (2, 2), padding: (1, 1)),
        Case(x: [3, 16, 17, 19], w: [32, 16, 1, 1]),
        Case(x: [1, 64, 28, 28], w: [64, 64, 1, 1], stride: (2, 2)),
        Case(x: [1, 3, 40, 40], w: [16, 3, 7, 7], stride: (2, 2), padding: (3, 3)),
        Case(x: [1, 5, 9, 7], w: [6, 5, 3, 2], stride: (2, 1), padding: (2, 1), dilation: (2, 1)),
        Case(x: [2, 36, 14, 14], w: [16, 9, 3, 3], padding: (1, 1), groups: 4),
        Case(x: [2, 36, 15, 13], w: [16, 9, 3, 3], stride: (2, 2), padding: (1, 1), groups: 4),
        Case(x: [1, 12, 11, 10], w: [12, 1, 5, 5], stride: (3, 3), padding: (2, 2), groups: 12),
        Case(x: [1, 48, 16, 16], w: [96, 48, 3, 3], padding: (1, 1)),
        Case(x: [2, 32, 7, 7], w: [64, 32, 3, 3], padding: (1, 1)),
    ]

    override func tearDown() {
        ConvPolicy.forced = nil
        super.tearDown()
    }

    func testOneDNNMatchesEngineOnEveryPass() {
        let savedThreads = Threads.count
        defer { Threads.count = savedThreads }
        for (i, c) in cases.enumerated() {
            let x = randomTensor(c.x, seed: UInt64(10 * i + 1), requiresGrad: false)
            let w = randomTensor(c.w, seed: UInt64(10 * i + 2), requiresGrad: false)
            let b = randomTensor([c.w[0]], seed: UInt64(10 * i + 3), requiresGrad: false)
            func run(_ impl: ConvImplementation) -> [Tensor] {
                ConvPolicy.forced = impl
                let y = conv2d(x, w, b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
                let gy = randomTensor(y.shape, seed: UInt64(10 * i + 4), requiresGrad: false)
                let (gx, gw) = conv2dGradients(x, w, gy, stride: c.stride, padding: c.padding, dilation: c.dilation,
                                               groups: c.groups)
                return [y, gx!, gw!]
            }
            Threads.count = 1
            let reference = run(.engine)
            for threads in [1, 2] {
                Threads.count = threads
                for impl in [ConvImplementation.oneDNNPlain, .oneDNNBlocked] {
                    let before = ConvPolicy.oneDNNPasses
                    let got = run(impl)
                    if c.groups == 1 { XCTAssertEqual(ConvPolicy.oneDNNPasses - before, 3, "case \(i) \(impl): oneDNN ran every pass") }
                    for (pass, (got, want)) in zip(["forward", "input gradient", "weight gradient"], zip(got, reference)) {
                        assertAllClose(got, want, tol: 1e-4, "case \(i) \(impl) \(threads) threads \(pass)")
                    }
                }
            }
        }
    }

    func testAutomaticPolicyMatchesEngine() {
        let c = cases[0]
        let x = randomTensor(c.x, seed: 1), w = randomTensor(c.w, seed: 2)
        ConvPolicy.forced = .engine
        let want = conv2d(x, w, padding: c.padding)
        want.sum().backward()
        let (gx, gw) = (x.grad!, w.grad!)
        x.zeroGrad(); w.zeroGrad()
        ConvPolicy.forced = nil
        let got = conv2d(x, w, padding: c.padding)
        got.sum().backward()
        assertAllClose(got, want, tol: 1e-4, "forward")
        assertAllClose(x.grad!, gx, tol: 1e-4, "input gradient")
        assertAllClose(w.grad!, gw, tol: 1e-4, "weight gradient")
    }
}

/// |a − b| ≤ tol·max(1, |b|) everywhere.
func assertAllClose(_ a: Tensor, _ b: Tensor, tol: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
    for i in 0..<min(a.count, b.count) where !(abs(a.data[i] - b.data[i]) <= tol * max(1, abs(b.data[i]))) {
        XCTFail("\(what): element \(i): \(a.data[i]) vs \(b.data[i])", file: file, line: line)
        return
    }
}

/// The fused epilogue (scale, shift, residual, ReLU) against the same ops one by one, in every implementation and
/// with gradients (where it records the unfused ops).
final class ConvFusedTests: XCTestCase {
    override func tearDown() {
        ConvPolicy.forced = nil
        super.tearDown()
    }

    func testFusedEpilogueMatchesComposition() {
        let savedThreads = Threads.count
        defer { Threads.count = savedThreads }
        let shapes: [([Int], [Int], (Int, Int), (Int, Int))] = [
            ([1, 32, 20, 20], [48, 32, 3, 3], (1, 1), (1, 1)),
            ([2, 64, 14, 14], [64, 64, 1, 1], (1, 1), (0, 0)),
            ([1, 16, 15, 15], [32, 16, 3, 3], (2, 2), (1, 1)),
            ([2, 36, 14, 14], [16, 9, 3, 3], (1, 1), (1, 1)),
        ]
        for (i, (xs, ws, stride, padding)) in shapes.enumerated() {
            let groups = xs[1] / ws[1]
            let x = randomTensor(xs, seed: UInt64(100 + i), requiresGrad: false)
            let w = randomTensor(ws, seed: UInt64(200 + i), requiresGrad: false)
            let o = ws[0]
            let scale = randomTensor([o], seed: UInt64(300 + i), lo: 0.5, hi: 1.5, requiresGrad: false)
            let shift = randomTensor([o], seed: UInt64(400 + i), requiresGrad: false)
            ConvPolicy.forced = .engine
            let plain = conv2d(x, w, stride: stride, padding: padding, groups: groups)
            let residual = randomTensor(plain.shape, seed: UInt64(500 + i), requiresGrad: false)
            let affine = plain * scale.reshape([1, o, 1, 1]) + shift.reshape([1, o, 1, 1])
            let want = (affine + residual).relu()
            for threads in [1, 2] {
                Threads.count = threads
                for impl in ConvImplementation.allCases {
                    ConvPolicy.forced = impl
                    let got = conv2dFused(x, w, scale: scale, shift: shift, residual: residual, relu: true, stride: stride,
                                          padding: padding, groups: groups)
                    assertAllClose(got, want, tol: 1e-4, "shape \(i) \(impl) \(threads) threads, full epilogue")
                    let noResidual = conv2dFused(x, w, scale: scale, shift: shift, stride: stride, padding: padding, groups: groups)
                    assertAllClose(noResidual, affine, tol: 1e-4, "shape \(i) \(impl) \(threads) threads, affine only")
                }
            }
            // With gradients it is the composition itself.
            ConvPolicy.forced = nil
            let xg = randomTensor(xs, seed: UInt64(100 + i)), wg = randomTensor(ws, seed: UInt64(200 + i))
            conv2dFused(xg, wg, scale: scale, shift: shift, residual: residual, relu: true, stride: stride, padding: padding,
                        groups: groups).sum().backward()
            let xr = randomTensor(xs, seed: UInt64(100 + i)), wr = randomTensor(ws, seed: UInt64(200 + i))
            let yr = conv2d(xr, wr, stride: stride, padding: padding, groups: groups) * scale.reshape([1, o, 1, 1])
                + shift.reshape([1, o, 1, 1])
            (yr + residual).relu().sum().backward()
            assertAllClose(xg.grad!, xr.grad!, tol: 1e-5, "shape \(i) input gradient")
            assertAllClose(wg.grad!, wr.grad!, tol: 1e-5, "shape \(i) weight gradient")
        }
    }

    func testChannelAffine() {
        let x = randomTensor([2, 5, 3, 4], seed: 1, requiresGrad: false)
        let scale = randomTensor([5], seed: 2, requiresGrad: false), shift = randomTensor([5], seed: 3, requiresGrad: false)
        let want = (x * scale.reshape([1, 5, 1, 1]) + shift.reshape([1, 5, 1, 1])).relu()
        assertAllClose(channelAffine(x, scale: scale, shift: shift, relu: true), want, tol: 1e-6, "channelAffine")
    }
}

/// Winograd at inference: forward passes without gradients on 3×3 stride-1 convolutions with ≥ 64 channels and
/// output planes of ≥ 64×64 run oneDNN's F(4×4, 3×3) kernel; its results stay within 2e-5 of the direct convolution relative to the output's
/// largest magnitude (RetinaNet's head sizes, with and without the fused epilogue), and passes that record
/// gradients never take it.
final class WinogradTests: XCTestCase {
    func testWinogradMatchesDirectConvolution() throws {
        try XCTSkipUnless(ConvPolicy.winogradAtInference, "ACMIX_WINOGRAD=0")
        let shapes: [([Int], [Int])] = [([1, 256, 50, 84], [256, 256, 3, 3]), ([2, 64, 64, 72], [96, 64, 3, 3])]
        for (i, (xs, ws)) in shapes.enumerated() {
            let x = randomTensor(xs, seed: UInt64(700 + i), requiresGrad: false)
            let w = randomTensor(ws, seed: UInt64(800 + i), lo: -0.05, hi: 0.05, requiresGrad: false)
            let b = randomTensor([ws[0]], seed: UInt64(900 + i), requiresGrad: false)
            let scale = randomTensor([ws[0]], seed: UInt64(1000 + i), lo: 0.5, hi: 1.5, requiresGrad: false)
            // Recording gradients: the direct kernel.
            let wg = randomTensor(ws, seed: UInt64(800 + i), lo: -0.05, hi: 0.05)
            let before = ConvPolicy.winogradPasses
            let direct = conv2d(x, wg, b, padding: (1, 1))
            let directFused = conv2dFused(x, wg, b, scale: scale, shift: b, residual: direct, relu: true, padding: (1, 1))
            XCTAssertEqual(ConvPolicy.winogradPasses, before, "case \(i): a pass with gradients ran Winograd")
            let fast = withNoGrad { conv2d(x, w, b, padding: (1, 1)) }
            // oneDNN's Winograd kernels need AVX-512; elsewhere every pass stays direct.
            if ConvPolicy.winogradPasses == before { throw XCTSkip("oneDNN has no Winograd kernel on this CPU") }
            let fastFused = withNoGrad {
                conv2dFused(x, w, b, scale: scale, shift: b, residual: direct.detached(), relu: true, padding: (1, 1))
            }
            // Bias and ReLU only: the ReLU runs inside oneDNN's kernel as a post-op.
            let directReLU = conv2dFused(x, wg, b, relu: true, padding: (1, 1))
            let fastReLU = withNoGrad { conv2dFused(x, w, b, relu: true, padding: (1, 1)) }
            XCTAssertEqual(ConvPolicy.winogradPasses, before + 3, "case \(i): inference passes ran Winograd")
            for (got, want, what) in [(fast, direct, "conv2d"), (fastFused, directFused, "conv2dFused"),
                                      (fastReLU, directReLU, "conv2dFused with ReLU")] {
                var worst: Float = 0, largest: Float = 0
                for j in 0..<want.count {
                    worst = max(worst, abs(got.data[j] - want.data[j]))
                    largest = max(largest, abs(want.data[j]))
                }
                print("winograd case \(i) \(what): max abs difference \(worst), max |y| \(largest)")
                XCTAssertLessThanOrEqual(worst, 2e-5 * largest, "case \(i) \(what)")
            }
        }
    }

    /// The engine's own Winograd kernel (CPUs below AVX-512) on what RetinaNet's shapes do not cover: padding 0 and 2,
    /// channel counts that are not multiples of its 64-channel sums or of 8, widths with partial tiles, a batch of 2,
    /// and the full epilogue (bias, scale, shift, shortcut, ReLU).
    func testWinogradOnUnevenShapes() throws {
        try XCTSkipUnless(ConvPolicy.winogradAtInference, "ACMIX_WINOGRAD=0")
        let cases: [(x: [Int], w: [Int], pad: Int)] = [([1, 80, 70, 61], [72, 80, 3, 3], 1), ([2, 64, 70, 70], [64, 64, 3, 3], 0),
                                                       ([1, 150, 62, 62], [66, 150, 3, 3], 2)]
        for (i, s) in cases.enumerated() {
            let x = randomTensor(s.x, seed: UInt64(1100 + i), requiresGrad: false)
            let w = randomTensor(s.w, seed: UInt64(1200 + i), lo: -0.05, hi: 0.05, requiresGrad: false)
            let wg = randomTensor(s.w, seed: UInt64(1200 + i), lo: -0.05, hi: 0.05)
            let b = randomTensor([s.w[0]], seed: UInt64(1300 + i), requiresGrad: false)
            let scale = randomTensor([s.w[0]], seed: UInt64(1400 + i), lo: 0.5, hi: 1.5, requiresGrad: false)
            let pad = (s.pad, s.pad)
            let direct = conv2d(x, wg, b, padding: pad)
            let directFused = conv2dFused(x, wg, b, scale: scale, shift: b, residual: direct, relu: true, padding: pad)
            let before = ConvPolicy.winogradPasses
            let fast = withNoGrad { conv2d(x, w, b, padding: pad) }
            if ConvPolicy.winogradPasses == before { throw XCTSkip("no Winograd kernel for these shapes on this CPU (oneDNN's, on AVX-512)") }
            let fastFused = withNoGrad { conv2dFused(x, w, b, scale: scale, shift: b, residual: direct.detached(), relu: true, padding: pad) }
            XCTAssertEqual(ConvPolicy.winogradPasses, before + 2, "case \(i)")
            for (got, want, what) in [(fast, direct, "conv2d"), (fastFused, directFused, "conv2dFused")] {
                XCTAssertEqual(got.shape, want.shape)
                var worst: Float = 0, largest: Float = 0
                for j in 0..<want.count {
                    worst = max(worst, abs(got.data[j] - want.data[j]))
                    largest = max(largest, abs(want.data[j]))
                }
                XCTAssertLessThanOrEqual(worst, 2e-5 * largest, "case \(i) \(what)")
            }
        }
    }
}
