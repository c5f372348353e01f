import XCTest
final class PlaceholderBackbonesTests: XCTestCase { func testBuilds() {} }
