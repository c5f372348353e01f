import Engine
import Foundation

/// The safetensors format: 8-byte little-endian header length, a JSON header
/// `{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the raw data.
/// Reading memory-maps the file and converts F32/F16/BF16/F64/I64/I32/I8/U8/BOOL to Float32 tensors.
public enum SafeTensors {
    static let dtypeSizes: [String: Int] = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1]

    public struct File {
        public var tensors: [String: Tensor]
        /// Names in file order (data offset order).
        public var names: [String]
        public var metadata: [String: String]
    }

    /// Reads and checks a whole file. Every size and offset from the file is checked, with overflow-checked
    /// arithmetic, before anything is allocated or copied: the header length against the file, each shape's element
    /// and byte counts, each tensor's offsets against the data section, which the tensors must cover back to back
    /// (as the reference implementation requires). Duplicate names, non-integer or negative dimensions are refused.
    public static func read(path: String) throws -> File {
        func fail(_ p: String) -> KitError { .format("\(path): \(p)") }
        // O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read.
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw fail("cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }
        guard let size = Int(exactly: st.st_size), size >= 8 else {
            throw fail("truncated: \(st.st_size) bytes, shorter than the 8-byte header length")
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { throw fail("cannot map") }
        defer { munmap(base, size) }
        let bytes = UnsafeRawBufferPointer(start: base, count: size)
        // PyTorch's own formats: a zip archive (torch.save since 1.6) or a bare pickle (protocol 2+ starts with 0x80).
        if (bytes[0] == 0x50 && bytes[1] == 0x4B && bytes[2] == 0x03 && bytes[3] == 0x04) || (bytes[0] == 0x80 && (2...5).contains(bytes[1])) {
            throw KitError.checkpoint("\(path): a PyTorch checkpoint (.pth), not safetensors; convert it once with "
                                      + "scripts/convert_pth.py \(path) OUT.safetensors")
        }
        // Compared as UInt64 first: 2^64 − 1 must not become −1 (or wrap) on its way to Int.
        let declared = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(size - 8), let headerLen = Int(exactly: declared) else {
            throw fail("header length \(declared) runs past the end of the file (\(size) bytes)")
        }
        let (dataStart, startOverflow) = 8.addingReportingOverflow(headerLen)
        guard !startOverflow, dataStart <= size else { throw fail("header length \(declared) runs past the end of the file (\(size) bytes)") }
        let dataSize = size - dataStart
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart])
        let header: JSON
        do { header = try JSON.parse(headerBytes, source: "\(path) header") }
        catch let e as KitError { throw fail("bad header: \(e.description)") }
        guard let entries = header.objectValue else { throw fail("header is not a JSON object") }
        // json-c keeps the last of two equal keys: look for them in the text.
        if let dup = JSON.firstDuplicateKey(headerBytes) {
            if dup.path.isEmpty { throw fail("duplicate tensor name '\(JSON.printable(dup.key))' in the header") }
            throw fail("tensor '\(JSON.printable(dup.path[0]))': duplicate key '\(JSON.printable(dup.key))'")
        }

        struct Entry { let name: String; let dtype: String; let shape: [Int]; let begin: Int; let end: Int }
        var list: [Entry] = []
        var metadata: [String: String] = [:]
        for (name, value) in entries {
            if name == "__metadata__" {
                guard let kv = value.objectValue else { throw fail("__metadata__ must be an object of strings, got \(value.typeName)") }
                for (k, v) in kv { metadata[k] = v.stringValue ?? v.serialized() }
                continue
            }
            func bad(_ p: String) -> KitError { fail("tensor '\(JSON.printable(name))': \(p)") }
            guard value.objectValue != nil else { throw bad("must be an object with dtype, shape and data_offsets, got \(value.typeName)") }
            guard let dtype = value["dtype"]?.stringValue else { throw bad("missing dtype") }
            guard let elem = dtypeSizes[dtype] else { throw bad("unsupported dtype \(JSON.printable(dtype))") }
            guard let shapeJ = value["shape"]?.arrayValue else { throw bad("missing or invalid shape (a list of integers)") }
            var shape: [Int] = []
            shape.reserveCapacity(shapeJ.count)
            for d in shapeJ {
                // Integers only, as written: 2.0 or "2" is not a dimension.
                guard case let .int(v) = d else { throw bad("invalid shape \(JSON.array(shapeJ).serialized()): dimensions must be integers") }
                guard v >= 0 else { throw bad("invalid shape \(JSON.array(shapeJ).serialized()): negative dimension \(v)") }
                shape.append(v)
            }
            // Element and byte counts, checked; the nonzero dimensions must multiply without overflow even when a zero
            // makes the tensor empty (strides are products of them too).
            var count = 1, nonzero = 1
            for d in shape {
                let (c, o1) = count.multipliedReportingOverflow(by: d)
                let (z, o2) = nonzero.multipliedReportingOverflow(by: Swift.max(d, 1))
                guard !o1, !o2 else { throw bad("shape \(shape): element count overflows a 64-bit integer") }
                count = c; nonzero = z
            }
            let (expected, o3) = count.multipliedReportingOverflow(by: elem)
            guard !o3 else { throw bad("shape \(shape) of \(dtype): byte size overflows a 64-bit integer") }
            guard let offsJ = value["data_offsets"]?.arrayValue, offsJ.count == 2,
                  case let .int(begin) = offsJ[0], case let .int(end) = offsJ[1] else {
                throw bad("missing or invalid data_offsets (two integers [begin, end])")
            }
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw bad("data_offsets [\(begin), \(end)] outside the data section (\(dataSize) bytes)")
            }
            guard end - begin == expected else {
                throw bad("shape \(shape) of \(dtype) needs \(expected) bytes, data_offsets give \(end - begin)")
            }
            list.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        list.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var covered = 0
        for (i, e) in list.enumerated() {
            if e.begin < covered {
                throw fail("tensors '\(JSON.printable(list[i - 1].name))' and '\(JSON.printable(e.name))' overlap in the data section")
            }
            if e.begin > covered {
                throw fail("data section bytes \(covered)..<\(e.begin) are not covered by any tensor (before '\(JSON.printable(e.name))')")
            }
            covered = e.end
        }
        guard covered == dataSize else {
            throw fail("data section bytes \(covered)..<\(dataSize) are not covered by any tensor")
        }

        var tensors: [String: Tensor] = [:]
        for e in list {
            let t = Tensor(uninitialized: e.shape)
            convert(bytes.baseAddress! + dataStart + e.begin, dtype: e.dtype, count: t.count, into: t.data)
            tensors[e.name] = t
        }
        return File(tensors: tensors, names: list.map(\.name), metadata: metadata)
    }

    static func convert(_ src: UnsafeRawPointer, dtype: String, count n: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case "F32": memcpy(dst, src, n * 4)
        case "F64": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case "I64": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case "I32": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case "U8", "BOOL": for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        case "I8": for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case "BF16":
            for i in 0..<n { dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
        case "F16": for i in 0..<n { dst[i] = halfToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        default: preconditionFailure("dtype checked before conversion")
        }
    }

    /// IEEE half → single, subnormals and specials included.
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F), mant = UInt32(h & 0x3FF)
        if exp == 0 {
            let v = Float(mant) * 0x1p-24
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    }

    /// Writes F32 tensors (in the given order) atomically: a temporary file in the same folder, fsync, rename.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to path: String) throws {
        try write(raw: tensors.map { name, t in
            RawTensor(name: name, dtype: "F32", shape: t.shape, bytes: UnsafeRawBufferPointer(start: t.data, count: 4 * t.count))
        }, metadata: metadata, to: path)
    }

    /// A tensor to write as it lies in memory: `bytes` holds the shape's elements of `dtype` (a key of `dtypeSizes`).
    public struct RawTensor {
        public var name: String, dtype: String, shape: [Int], bytes: UnsafeRawBufferPointer
        public init(name: String, dtype: String, shape: [Int], bytes: UnsafeRawBufferPointer) {
            precondition(dtypeSizes[dtype].map { $0 * shape.reduce(1, *) } == bytes.count, "\(name): \(dtype) \(shape) needs other bytes")
            self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
        }
    }

    /// Writes tensors of any dtype (in the given order) atomically.
    public static func write(raw tensors: [RawTensor], metadata: [String: String] = [:], to path: String) throws {
        var entries: [(String, JSON)] = []
        if !metadata.isEmpty {
            entries.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var offset = 0
        for t in tensors {
            entries.append((t.name, .object([("dtype", .string(t.dtype)), ("shape", .array(t.shape.map { .int($0) })),
                                            ("data_offsets", .array([.int(offset), .int(offset + t.bytes.count)]))])))
            offset += t.bytes.count
        }
        var header = Array(JSON.object(entries).serialized().utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        try atomicWrite(path: path) { fd in
            var len = UInt64(header.count).littleEndian
            try writeAll(fd, &len, 8, path)
            try writeAll(fd, header, header.count, path)
            for t in tensors where t.bytes.count > 0 { try writeAll(fd, t.bytes.baseAddress!, t.bytes.count, path) }
        }
    }
}
