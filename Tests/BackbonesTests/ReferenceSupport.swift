import Foundation
import XCTest
import Engine
import NN

/// ../shared/reference/acmix relative to the repository root.
let acmixReferenceDir: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        url.deleteLastPathComponent()
    }
    return url.deletingLastPathComponent().appendingPathComponent("shared/reference/acmix").path
}()

/// Asserts |a − b| ≤ tol·max|b| elementwise (the reference README's criterion); returns the max abs error.
@discardableResult
func assertMatches(_ a: Tensor?, _ b: Tensor?, _ name: String, tol: Float = 1e-4,
                   file: StaticString = #filePath, line: UInt = #line) -> Float {
    guard let a, let b else { XCTFail("\(name): missing tensor", file: file, line: line); return .infinity }
    guard a.count == b.count else { XCTFail("\(name): \(a.shape) vs reference \(b.shape)", file: file, line: line); return .infinity }
    var scale: Float = 0, err: Float = 0
    for i in 0..<b.count { scale = max(scale, abs(b.data[i])); err = max(err, abs(a.data[i] - b.data[i])) }
    XCTAssertLessThanOrEqual(err, tol * max(scale, 1e-12), "\(name): max error \(err) vs largest magnitude \(scale)", file: file, line: line)
    return err
}

/// The `prefix`-stripped sub-dictionary of a reference file (e.g. "param." or "grad.").
func entries(_ f: SafeTensors.File, prefix: String) -> [String: Tensor] {
    Dictionary(uniqueKeysWithValues: f.tensors.filter { $0.key.hasPrefix(prefix) }.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
}
