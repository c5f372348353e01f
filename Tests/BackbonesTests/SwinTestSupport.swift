import Engine
import Foundation
import NN
import XCTest

/// ../shared/reference/acmix relative to the repository root (found from this file's path).
let swinReferenceDir: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        url.deleteLastPathComponent()
    }
    return url.deletingLastPathComponent().appendingPathComponent("shared/reference/acmix").path
}()

/// Reads a reference file, skipping the test when the shared reference data is not present.
func swinReference(_ name: String) throws -> SafeTensors.File {
    let path = swinReferenceDir + "/" + name
    guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("reference file \(path) not found") }
    return try SafeTensors.read(path: path)
}

/// max |a − b| and max |b| over two same-shaped tensors.
func swinErrors(_ a: Tensor, _ b: Tensor) -> (abs: Float, scale: Float) {
    precondition(a.count == b.count)
    var err: Float = 0, scale: Float = 0
    for i in 0..<a.count { err = max(err, abs(a.data[i] - b.data[i])); scale = max(scale, abs(b.data[i])) }
    return (err, scale)
}

/// Asserts `actual` matches `expected` within 1e-4 of the reference's largest magnitude; prints the error.
@discardableResult
func assertSwinClose(_ actual: Tensor?, _ expected: Tensor?, _ name: String, tol: Float = 1e-4,
                     file: StaticString = #filePath, line: UInt = #line) -> Float {
    guard let actual, let expected else { XCTFail("\(name): missing tensor", file: file, line: line); return .infinity }
    XCTAssertEqual(actual.count, expected.count, "\(name): \(actual.shape) vs \(expected.shape)", file: file, line: line)
    guard actual.count == expected.count else { return .infinity }
    let (err, scale) = swinErrors(actual, expected)
    print(String(format: "  %@: max abs error %.3g (max |ref| %.3g, relative %.3g)", name, err, scale, err / max(scale, 1e-30)))
    XCTAssertLessThanOrEqual(err, tol * max(scale, 1e-30), "\(name): max abs error \(err) vs scale \(scale)", file: file, line: line)
    return err
}
