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
