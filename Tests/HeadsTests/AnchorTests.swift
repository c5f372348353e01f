import Heads
import XCTest

final class AnchorTests: XCTestCase {
    func testPlaceholder() {}
}
