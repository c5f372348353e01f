import Engine
import Foundation
import NN
import XCTest

final class SHA256Tests: XCTestCase {
    /// FIPS 180-4's examples, and a multi-block message against coreutils' sha256sum.
    func testDigests() throws {
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let path = NSTemporaryDirectory() + "sha-\(UUID().uuidString)"
        let bytes = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        p.waitUntilExit()
        let expected = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: " ").first.map(String.init)
        XCTAssertEqual(try SHA256.hex(fileAt: path), expected)
    }

    /// Raw tensors of any dtype are written as given and read back as float32 (I8 included).
    func testRawTensorsRoundTrip() throws {
        let path = NSTemporaryDirectory() + "raw-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let q: [Int8] = [-127, -1, 0, 5, 127, 64]
        let f: [Float] = [0.5, -2]
        try q.withUnsafeBytes { qb in try f.withUnsafeBytes { fb in
            try SafeTensors.write(raw: [.init(name: "q", dtype: "I8", shape: [2, 3], bytes: qb), .init(name: "f", dtype: "F32", shape: [2], bytes: fb)],
                                  metadata: ["k": "v"], to: path)
        } }
        let file = try SafeTensors.read(path: path)
        XCTAssertEqual(file.names, ["q", "f"])
        XCTAssertEqual(file.tensors["q"]?.shape, [2, 3])
        XCTAssertEqual(file.tensors["q"]?.array, q.map(Float.init))
        XCTAssertEqual(file.tensors["f"]?.array, f)
        XCTAssertEqual(file.metadata["k"], "v")
    }
}
