import Engine
import Foundation

/// A problem with a safetensors file, named with its path.

/// The safetensors format: 8-byte little-endian header length, a JSON header
/// `{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the raw data.
/// Reading memory-maps the file and converts F32/F16/BF16/F64/I64/I32/U8/BOOL to Float32 tensors.
public enum SafeTensors {
    static let dtypeSizes: [String: Int] = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1]

    public struct File {
        public var tensors: [String: Tensor]
        /// Names in file order (data offset order).
        public var names: [String]
        public var metadata: [String: String]
    }

    public static func read(path: String) throws -> File {
        func fail(_ p: String) -> KitError { .format("\(path): \(p)") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw fail("cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw fail("truncated: \(size) bytes, shorter than the 8-byte header length") }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { throw fail("cannot map") }
        defer { munmap(base, size) }
        let bytes = UnsafeRawBufferPointer(start: base, count: size)
        let headerLen = Int(UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self)))
        guard headerLen <= size - 8 else {
            throw fail("header length \(headerLen) runs past the end of the file (\(size) bytes)")
        }
        let header: JSON
        do { header = try JSON.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLen)]), source: "\(path) header") }
        catch let e as KitError { throw fail("bad header: \(e.description)") }
        guard let entries = header.objectValue else { throw fail("header is not a JSON object") }
        let dataStart = 8 + headerLen, dataSize = size - dataStart

        struct Entry { let name: String; let dtype: String; let shape: [Int]; let begin: Int; let end: Int }
        var list: [Entry] = []
        var metadata: [String: String] = [:]
        for (name, value) in entries {
            if name == "__metadata__" {
                for (k, v) in value.objectValue ?? [] { metadata[k] = v.stringValue ?? v.serialized() }
                continue
            }
            guard let dtype = value["dtype"]?.stringValue else { throw fail("tensor '\(name)': missing dtype") }
            guard let elem = dtypeSizes[dtype] else { throw fail("tensor '\(name)': unsupported dtype \(dtype)") }
            guard let shapeJ = value["shape"]?.arrayValue, let shape = Optional(shapeJ.compactMap(\.intValue)),
                  shape.count == shapeJ.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor '\(name)': missing or invalid shape")
            }
            guard let offs = value["data_offsets"]?.arrayValue?.compactMap(\.intValue), offs.count == 2 else {
                throw fail("tensor '\(name)': missing or invalid data_offsets")
            }
            guard offs[0] >= 0, offs[0] <= offs[1], offs[1] <= dataSize else {
                throw fail("tensor '\(name)': data_offsets [\(offs[0]), \(offs[1])] outside the data section (\(dataSize) bytes)")
            }
            let expected = shape.reduce(1, *) * elem
            guard offs[1] - offs[0] == expected else {
                throw fail("tensor '\(name)': shape \(shape) of \(dtype) needs \(expected) bytes, data_offsets give \(offs[1] - offs[0])")
            }
            list.append(Entry(name: name, dtype: dtype, shape: shape, begin: offs[0], end: offs[1]))
        }
        list.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (a, b) in zip(list, list.dropFirst()) where b.begin < a.end {
            throw fail("tensors '\(a.name)' and '\(b.name)' overlap in the data section")
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
        var entries: [(String, JSON)] = []
        if !metadata.isEmpty {
            entries.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var offset = 0
        for (name, t) in tensors {
            entries.append((name, .object([("dtype", .string("F32")), ("shape", .array(t.shape.map { .int($0) })),
                                          ("data_offsets", .array([.int(offset), .int(offset + 4 * t.count)]))])))
            offset += 4 * t.count
        }
        var header = Array(JSON.object(entries).serialized().utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        try atomicWrite(path: path) { fd in
            var len = UInt64(header.count).littleEndian
            try writeAll(fd, &len, 8, path)
            try writeAll(fd, header, header.count, path)
            for (_, t) in tensors { try writeAll(fd, t.data, 4 * t.count, path) }
        }
    }
}
