import XCTest
import Engine
import NN

final class SafeTensorsTests: XCTestCase {
    func testReadsFileWrittenByPython() throws {
        let f = try SafeTensors.read(path: referenceDir + "/acmix/acmix_swin_block.safetensors")
        XCTAssertEqual(f.metadata["module"], "SwinTransformerBlock+ACmix")
        XCTAssertEqual(f.tensors["input"]?.shape, [2, 196, 32])
        // An I64 buffer: relative_position_index takes integer values 0..168, the first row starts at 84.
        let idx = try XCTUnwrap(f.tensors["param.attn.relative_position_index"])
        XCTAssertEqual(idx.shape, [49, 49])
        XCTAssertEqual(idx.data[0], 84)
        XCTAssertEqual(idx.array.max(), 168)
    }

    func testRoundTrip() throws {
        let a = Tensor([1, -2.5, 3e-8, .greatestFiniteMagnitude, 0, 7], shape: [2, 3]), b = Tensor(zeros: [0, 4])
        let path = temporaryPath("rt.safetensors")
        try SafeTensors.write([("a", a), ("empty", b)], metadata: ["format": "pt"], to: path)
        let f = try SafeTensors.read(path: path)
        XCTAssertEqual(f.tensors["a"]?.array, a.array)
        XCTAssertEqual(f.tensors["a"]?.shape, [2, 3])
        XCTAssertEqual(f.tensors["empty"]?.shape, [0, 4])
        XCTAssertEqual(f.metadata["format"], "pt")
        XCTAssertEqual(f.names, ["a", "empty"])
    }

    /// Builds a file from a header string and raw data bytes.
    func file(_ header: String, data: [UInt8], lengthOverride: UInt64? = nil) -> String {
        var bytes: [UInt8] = []
        let h = Array(header.utf8)
        withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { bytes += $0 }
        bytes += h + data
        let path = temporaryPath("bad-\(UUID().uuidString).safetensors")
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func expectError(_ path: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors.read(path: path), file: file, line: line) { e in
            let msg = "\(e)"
            XCTAssertTrue(msg.contains(path), "message names the file: \(msg)", file: file, line: line)
            XCTAssertTrue(msg.contains(fragment), "'\(fragment)' in: \(msg)", file: file, line: line)
        }
    }

    func testConvertsHalfAndBFloat16AndInts() throws {
        // F16 1.0 = 0x3C00, −2.0 = 0xC000, smallest subnormal 0x0001; BF16 1.5 = 0x3FC0; I64 −3.
        let header = #"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]},"i":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}"#
        var data: [UInt8] = [0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0xC0, 0x3F]
        withUnsafeBytes(of: Int64(-3).littleEndian) { data += $0 }
        let f = try SafeTensors.read(path: file(header, data: data))
        XCTAssertEqual(f.tensors["h"]?.array, [1, -2, Float(0x1p-24)])
        XCTAssertEqual(f.tensors["b"]?.array, [1.5])
        XCTAssertEqual(f.tensors["i"]?.array, [-3])
    }

    func testBadFiles() {
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        expectError(file(ok, data: [0, 0, 0]), "outside the data section")                  // truncated data
        expectError(file(ok, data: [], lengthOverride: 1000), "runs past the end")            // header length too big
        expectError(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                         data: Array(repeating: 0, count: 8)), "overlap")
        expectError(file(#"{"a":{"dtype":"Q8","shape":[2],"data_offsets":[0,2]}}"#, data: [0, 0]), "unsupported dtype Q8")
        expectError(file(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), "needs 12 bytes")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]"#, data: Array(repeating: 0, count: 8)), "malformed JSON")
        expectError(file(#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), "missing dtype")
        let tiny = temporaryPath("tiny.safetensors")
        FileManager.default.createFile(atPath: tiny, contents: Data([1, 2, 3]))
        expectError(tiny, "truncated")
        expectError(temporaryPath("does-not-exist.safetensors"), "cannot open")
    }

    func testAtomicWriteLeavesNoTemporaryFiles() throws {
        let path = temporaryPath("atomic.safetensors")
        try SafeTensors.write([("x", Tensor(zeros: [3]))], to: path)
        try SafeTensors.write([("x", Tensor(zeros: [4], value: 1))], to: path)
        XCTAssertEqual(try SafeTensors.read(path: path).tensors["x"]?.array, [1, 1, 1, 1])
        let dir = (path as NSString).deletingLastPathComponent
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.contains("atomic.safetensors.tmp") })
    }
}
