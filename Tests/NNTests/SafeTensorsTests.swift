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

    /// Writes `bytes` as they are (no header length computed), for length fields that lie.
    func rawFile(_ bytes: [UInt8]) -> String {
        let path = temporaryPath("raw-\(UUID().uuidString).safetensors")
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// A shape whose element count overflows Int must be refused before anything is allocated (it wrapped to 0 and
    /// the reader SIGSEGVed building a 2^96-element tensor); so must a byte size that overflows.
    func testShapeProductOverflowIsRefused() {
        let big = 1 << 32
        expectError(file(#"{"a":{"dtype":"F32","shape":[\#(big),\#(big),\#(big)],"data_offsets":[0,0]}}"#, data: []),
                    "overflows")
        expectError(file(#"{"a":{"dtype":"F32","shape":[\#(big),\#(big),\#(big)],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
                    "overflows")
        // 2^61 elements fit Int, 2^61 × 4 bytes does not.
        expectError(file(#"{"a":{"dtype":"F32","shape":[\#(1 << 61)],"data_offsets":[0,0]}}"#, data: []), "overflows")
        // A zero makes the tensor empty, but its strides are still products of the other dimensions: refused too.
        expectError(file(#"{"a":{"dtype":"F32","shape":[0,\#(big),\#(big),\#(big)],"data_offsets":[0,0]}}"#, data: []), "overflows")
        let empty = file(#"{"a":{"dtype":"F32","shape":[0,\#(big)],"data_offsets":[0,0]}}"#, data: [])
        XCTAssertEqual(try SafeTensors.read(path: empty).tensors["a"]?.shape, [0, big])
    }

    /// A header length of 2^64 − 1 (all 0xFF) became −1 as an Int and passed the "fits the file" check: the header was
    /// read one byte off and the file accepted with wrong tensors. Every length beyond the file is refused, however big.
    func testHugeHeaderLengthIsRefused() {
        let header = Array(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#.utf8)
        for length: UInt64 in [.max, 1 << 63, (1 << 63) - 1, UInt64(header.count) + 2] {
            var bytes: [UInt8] = []
            withUnsafeBytes(of: length.littleEndian) { bytes += $0 }
            expectError(rawFile(bytes + header + [7]), "runs past the end")
        }
    }

    func testBadShapesOffsetsAndNames() {
        let data = [UInt8](repeating: 0, count: 8)
        expectError(file(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: data), "negative")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: data), "shape")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, data: data), "shape")
        expectError(file(#"{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, data: data), "shape")
        expectError(file(#"{"a":{"dtype":"F32","shape":[1e300],"data_offsets":[0,8]}}"#, data: data), "shape")
        expectError(file(#"{"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}}"#, data: data), "shape")
        expectError(file(#"{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}"#, data: data), "shape")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: data), "data_offsets")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#, data: data), "data_offsets")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}"#, data: data), "data_offsets")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}}"#, data: data), "data_offsets")
        expectError(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#, data: data), "data_offsets")
        expectError(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                         data: data), "duplicate tensor name 'a'")
        // The same name spelled with an escape is the same name.
        expectError(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                         data: data), "duplicate tensor name 'a'")
        expectError(file(#"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data), "duplicate key 'dtype'")
        expectError(file(#"["a"]"#, data: []), "not a JSON object")
        expectError(file(#"{"a":7}"#, data: []), "tensor 'a'")
        expectError(file(#"{"__metadata__":7}"#, data: []), "__metadata__")
        // Names from the file are escaped: the message stays one line (found by fuzzing).
        let newline = "a\nb"
        XCTAssertThrowsError(try SafeTensors.read(path: file(#"{"a\nb":{"shape":[2],"data_offsets":[0,8]}}"#, data: data))) { e in
            XCTAssertTrue("\(e)".contains("tensor 'a\\nb': missing dtype"), "\(e)")
            XCTAssertFalse("\(e)".contains(newline), "\(e)")
        }
        expectError("/dev/zero", "not a regular file")
        // Bytes the offsets leave out (the data section is not the tensors, back to back).
        expectError(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: data), "not covered")
        expectError(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: data), "not covered")
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
