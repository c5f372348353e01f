import XCTest
import Engine

final class AutogradTests: XCTestCase {
    func testAccumulationAcrossBackwardCalls() {
        let x = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        (x * x).sum().backward()
        (x * 2).sum().backward()
        assertClose(x.grad!, [4, 6, 8])
        x.zeroGrad()
        XCTAssertNil(x.grad)
    }

    func testSharedSubexpression() {
        let x = Tensor([0.5, -1], shape: [2], requiresGrad: true)
        let y = x.exp()
        (y * y + y).sum().backward()   // d/dx (e^{2x} + e^x) = 2e^{2x} + e^x
        assertClose(x.grad!, [Float(2 * exp(1.0) + exp(0.5)), Float(2 * exp(-2.0) + exp(-1.0))], tol: 1e-5)
    }

    func testNoGradRecordsNothing() {
        let x = Tensor([1, 2], shape: [2], requiresGrad: true)
        let y = withNoGrad { (x * 3).relu() }
        XCTAssertNil(y.node)
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNotNil((x * 3).node)
    }

    func testReshapeIsAView() {
        let x = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let v = x.reshape([3, 2])
        XCTAssert(v.storage === x.storage)
    }
}

final class GraphLifetimeTests: XCTestCase {
    /// A forward pass that is never back-propagated must free its graph: ops that need their output in the
    /// backward must not form output → node → closure → output cycles.
    func testAbandonedGraphIsFreed() {
        let w = Tensor([0.5, -1, 2], shape: [3], requiresGrad: true)
        let before = Storage.liveBytes
        for _ in 0..<3 {
            let x = Tensor(zeros: [1000], value: 0.3)
            _ = (x.reshape([1000, 1]) * w).relu().sigmoid().exp().tanh().softmax(axis: 1).logSoftmax(axis: 0).sqrt().sum()
        }
        XCTAssertEqual(Storage.liveBytes, before)
    }

    func testGraphIsReleasedAfterBackward() {
        let w = Tensor([0.5, -1, 2], shape: [3], requiresGrad: true)
        let before = Storage.liveBytes
        do {
            let y = (Tensor(zeros: [1000, 1], value: 0.3) * w).relu().sum()
            y.backward()
        }
        w.zeroGrad()
        XCTAssertEqual(Storage.liveBytes, before)
    }
}

final class TopologicalOrderTests: XCTestCase {
    /// r = f(a, b) with b = g(a): a must receive b's contribution before passing its gradient on.
    func testDiamondWithShortcut() {
        let x = Tensor([0.3, -0.2], shape: [2], requiresGrad: true)
        let a = x.exp()                 // interior
        let b = a * 2 + 1               // depends on a
        let r = (a + b).sum()           // a reaches r directly and through b
        r.backward()
        // r = Σ 3·e^x + 1 → dr/dx = 3·e^x
        assertClose(x.grad!, [Float(3 * exp(0.3)), Float(3 * exp(-0.2))], tol: 1e-5)
    }

    /// A gradient passed through unchanged (reshape's is a view of the incoming one; add hands the same buffer to
    /// both inputs) is kept by one input and copied for any other, so accumulating into one never changes another;
    /// the caller's seed gradient is never written.
    func testPassedThroughGradientsAreNotShared() {
        let x = Tensor([1, 2, 3, 4], shape: [4], requiresGrad: true)
        let a = x.exp(), b = x.exp()
        let r = a.reshape([2, 2]) + b.reshape([2, 2])          // add's backward: [g, g], both views downstream
        let s = (r.reshape([4]) * Tensor([1, 1, 1, 1], shape: [4])) + a.reshape([4])   // a gets a second gradient
        let seed = Tensor([0.5, 1, 1.5, 2], shape: [4])
        s.backward(seed)
        XCTAssertEqual(seed.array, [0.5, 1, 1.5, 2])
        // ds/dx = seed·(e^x + e^x) + seed·e^x = 3·seed·e^x
        assertClose(x.grad!, (0..<4).map { Float(3 * [0.5, 1, 1.5, 2][$0] * exp(Double($0 + 1))) }, tol: 1e-4)
        let y = Tensor([1, -2], shape: [2], requiresGrad: true)
        let t = (y + y).reshape([1, 2]) + y.reshape([1, 2])     // the same input twice, then again through a view
        t.sum().backward()
        XCTAssertEqual(y.grad!.array, [3, 3])
    }
}
