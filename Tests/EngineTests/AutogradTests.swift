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
