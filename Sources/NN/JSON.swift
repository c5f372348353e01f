import CJSONC
import Engine
import Foundation

/// A JSON value parsed with json-c (configs, safetensors headers, small files). Objects keep key order.
public indirect enum JSON: Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.int(x), .double(y)), let (.double(y), .int(x)): return Double(x) == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }
}


extension JSON {
    /// Parses `bytes` (exactly that many; no NUL terminator needed). `source` names the file in errors.
    ///
    /// Stricter than json-c where json-c would hand back a different value than the text says: integers beyond 64
    /// bits (which json-c saturates) become doubles, so integer readers refuse them; strings keep embedded NULs;
    /// strings and keys must be valid UTF-8; a bare number at the end of the input is complete. With `rejectDuplicateKeys`, a key written twice in one
    /// object is refused (json-c keeps the last one silently).
    public static func parse(_ bytes: UnsafeRawBufferPointer, source: String, rejectDuplicateKeys: Bool = false) throws -> JSON {
        guard let length = Int32(exactly: bytes.count) else {
            throw KitError.format("\(source): JSON text of \(bytes.count) bytes is larger than the parser takes (\(Int32.max) bytes)")
        }
        guard let tok = json_tokener_new() else { throw KitError.format("\(source): cannot allocate a JSON parser") }
        defer { json_tokener_free(tok) }
        // json-c's strict mode: its default also takes trailing commas and comments, which a config file would then
        // silently rely on (NaN and Infinity it reads either way; schemas refuse them by key).
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT)
        var obj = json_tokener_parse_ex(tok, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), length)
        var err = json_tokener_get_error(tok)
        var end = Int(json_tokener_get_parse_end(tok))
        if obj == nil && err == json_tokener_continue {
            // json-c cannot tell whether a number at the very end goes on ("5" may be "56"): a NUL ends the input.
            var nul: CChar = 0
            obj = json_tokener_parse_ex(tok, &nul, 1)
            err = json_tokener_get_error(tok)
            end = bytes.count
        }
        guard err == json_tokener_success, let obj else {
            let reason = err == json_tokener_continue || end >= bytes.count ? "unexpected end of input"
                : String(cString: json_tokener_error_desc(err))
            throw KitError.format("\(source): malformed JSON: \(reason) (at byte \(Swift.min(end, bytes.count)))")
        }
        defer { json_object_put(obj) }
        if end < bytes.count, bytes[end...].contains(where: { !" \n\r\t\0".utf8.contains($0) }) {
            throw KitError.format("\(source): malformed JSON: trailing characters after the value")
        }
        guard let value = convert(obj) else {
            throw KitError.format("\(source): malformed JSON: a string or key is not valid UTF-8")
        }
        if rejectDuplicateKeys, let dup = firstDuplicateKey(UnsafeRawBufferPointer(rebasing: bytes[..<Swift.min(end, bytes.count)])) {
            let at = dup.path.isEmpty ? "" : " in \(dup.path.joined(separator: "."))"
            throw KitError.format("\(source): malformed JSON: duplicate key '\(printable(dup.key))'\(printable(at))")
        }
        return value
    }

    public static func parse(_ text: String, source: String = "<string>", rejectDuplicateKeys: Bool = false) throws -> JSON {
        var t = text
        return try t.withUTF8 { try parse(UnsafeRawBufferPointer($0), source: source, rejectDuplicateKeys: rejectDuplicateKeys) }
    }

    /// Reads and parses a regular file (a FIFO or a device such as /dev/zero is refused, not read forever).
    public static func load(path: String, rejectDuplicateKeys: Bool = false) throws -> JSON {
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw KitError.io("\(path): cannot read file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw KitError.io("\(path): cannot read file (\(String(cString: strerror(errno))))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw KitError.io("\(path): cannot read file: not a regular file") }
        guard let size = Int(exactly: st.st_size), size <= Int(Int32.max) else {
            throw KitError.format("\(path): JSON text of \(st.st_size) bytes is larger than the parser takes (\(Int32.max) bytes)")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw KitError.io("\(path): cannot read file (\(n < 0 ? String(cString: strerror(errno)) : "it shrank while read"))") }
            done += n
        }
        return try bytes.withUnsafeBytes { try parse($0, source: path, rejectDuplicateKeys: rejectDuplicateKeys) }
    }

    /// json-c's tree to `JSON`; nil when a string or key is not valid UTF-8 (json-c does not check; repairing it
    /// could make two different keys equal). Depth is bounded by json-c's parser (32 levels).
    static func convert(_ o: OpaquePointer?) -> JSON? {
        guard let o else { return .null }
        switch json_object_get_type(o) {
        case json_type_null: return .null
        case json_type_boolean: return .bool(json_object_get_boolean(o) != 0)
        case json_type_int:
            // json-c saturates integers beyond 64 bits at INT64_MIN / UINT64_MAX and keeps 2^63...2^64-1 as unsigned:
            // those are doubles here, so `intValue` refuses them instead of reading a clamped number.
            let i = json_object_get_int64(o)
            if i == Int64.max, json_object_get_uint64(o) > UInt64(Int64.max) { return .double(Double(json_object_get_uint64(o))) }
            if i == Int64.min { return .double(Double(i)) }
            return .int(Int(i))
        case json_type_double:
            // NaN, Infinity and 1e400 (inf) stay as json-c reads them: schemas refuse them where a finite number is
            // needed, naming the key (ConfigSchema.numberRange).
            return .double(json_object_get_double(o))
        case json_type_string:
            // With its length: a string may hold \u0000.
            guard let p = json_object_get_string(o) else { return .string("") }
            let n = Swift.max(Int(json_object_get_string_len(o)), 0)
            let utf8 = UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: n)
            return String(validating: utf8, as: UTF8.self).map { .string($0) }
        case json_type_array:
            let n = json_object_array_length(o)
            var out: [JSON] = []
            out.reserveCapacity(n)
            for k in 0..<n {
                guard let v = convert(json_object_array_get_idx(o, k)) else { return nil }
                out.append(v)
            }
            return .array(out)
        case json_type_object:
            var out: [(String, JSON)] = []
            var it = json_object_iter_begin(o), end = json_object_iter_end(o)
            while json_object_iter_equal(&it, &end) == 0 {
                guard let key = String(validatingCString: json_object_iter_peek_name(&it)),
                      let v = convert(json_object_iter_peek_value(&it)) else { return nil }
                out.append((key, v))
                json_object_iter_next(&it)
            }
            return .object(out)
        default: return .null
        }
    }

    /// `s` for a one-line message: control characters escaped (a key or name from a file may hold a newline).
    public static func printable(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// The first key written twice in one object (json-c keeps only the last), with the keys and indices leading to
    /// that object. `bytes` must be text json-c accepted: strings in double or single quotes, C and C++ comments.
    /// Keys compare as json-c stores them: escapes decoded, cut at the first NUL.
    public static func firstDuplicateKey(_ bytes: UnsafeRawBufferPointer) -> (path: [String], key: String)? {
        struct Frame {
            var isObject: Bool
            var keys: Set<String> = []
            var expectKey = true
            var current = ""
            var index = 0
        }
        var stack: [Frame] = []
        let n = bytes.count
        var i = 0
        func hex(_ at: Int) -> UInt32? {
            guard at + 4 <= n else { return nil }
            var v: UInt32 = 0
            for k in at..<(at + 4) {
                let c = bytes[k]
                switch c {
                case 0x30...0x39: v = v << 4 | UInt32(c - 0x30)
                case 0x41...0x46: v = v << 4 | UInt32(c - 0x41 + 10)
                case 0x61...0x66: v = v << 4 | UInt32(c - 0x61 + 10)
                default: return nil
                }
            }
            return v
        }
        /// Reads the string whose quote is at `i`; leaves `i` after the closing quote.
        func string() -> String {
            let quote = bytes[i]
            var out: [UInt8] = []
            i += 1
            while i < n && bytes[i] != quote {
                if bytes[i] == 0x5C, i + 1 < n {  // backslash
                    let e = bytes[i + 1]
                    i += 2
                    switch e {
                    case UInt8(ascii: "b"): out.append(8)
                    case UInt8(ascii: "f"): out.append(12)
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "u"):
                        guard var u = hex(i) else { continue }
                        i += 4
                        if (0xD800..<0xDC00).contains(u), i + 6 <= n, bytes[i] == 0x5C, bytes[i + 1] == UInt8(ascii: "u"),
                           let lo = hex(i + 2), (0xDC00..<0xE000).contains(lo) {
                            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                            i += 6
                        }
                        out += Array(String(Character(Unicode.Scalar(u) ?? "\u{FFFD}")).utf8)
                    default: out.append(e)
                    }
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            i += 1
            if let nul = out.firstIndex(of: 0) { out.removeSubrange(nul...) }
            return String(decoding: out, as: UTF8.self)
        }
        while i < n {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                let s = string()
                if let top = stack.indices.last, stack[top].isObject, stack[top].expectKey {
                    if stack[top].keys.contains(s) {
                        let path = stack.dropLast().map { $0.isObject ? $0.current : String($0.index) }
                        return (path, s)
                    }
                    stack[top].keys.insert(s)
                    stack[top].current = s
                    stack[top].expectKey = false
                }
                continue
            case UInt8(ascii: "{"): stack.append(Frame(isObject: true))
            case UInt8(ascii: "["): stack.append(Frame(isObject: false))
            case UInt8(ascii: "}"), UInt8(ascii: "]"): _ = stack.popLast()
            case UInt8(ascii: ","):
                if let top = stack.indices.last {
                    if stack[top].isObject { stack[top].expectKey = true } else { stack[top].index += 1 }
                }
            case UInt8(ascii: "/") where i + 1 < n && bytes[i + 1] == UInt8(ascii: "*"):
                i += 2
                while i + 1 < n && !(bytes[i] == UInt8(ascii: "*") && bytes[i + 1] == UInt8(ascii: "/")) { i += 1 }
                i += 1
            case UInt8(ascii: "/") where i + 1 < n && bytes[i + 1] == UInt8(ascii: "/"):
                while i < n && bytes[i] != 10 { i += 1 }
            default: break
            }
            i += 1
        }
        return nil
    }

    // MARK: access

    /// An object's value for `key`, or a list's element at index `key` (so dotted config keys reach list items).
    public subscript(key: String) -> JSON? {
        if case let .object(kv) = self { return kv.last(where: { $0.0 == key })?.1 }
        if case let .array(a) = self, let i = Int(key), a.indices.contains(i) { return a[i] }
        return nil
    }

    public var objectValue: [(String, JSON)]? { if case let .object(v) = self { return v }; return nil }
    public var arrayValue: [JSON]? { if case let .array(v) = self { return v }; return nil }
    public var stringValue: String? { if case let .string(v) = self { return v }; return nil }
    public var boolValue: Bool? { if case let .bool(v) = self { return v }; return nil }
    public var doubleValue: Double? {
        switch self { case let .double(v): return v; case let .int(v): return Double(v); default: return nil }
    }
    public var intValue: Int? {
        switch self {
        case let .int(v): return v
        case let .double(v) where v == v.rounded() && abs(v) < 1e15: return Int(v)
        default: return nil
        }
    }

    public var typeName: String {
        switch self {
        case .null: return "null"; case .bool: return "boolean"; case .int: return "integer"; case .double: return "number"
        case .string: return "string"; case .array: return "array"; case .object: return "object"
        }
    }

    // MARK: writing

    /// Compact (or indented) JSON text; doubles at full precision (shortest round-trip form), NaN/inf as null.
    public func serialized(indent: Int? = nil, level: Int = 0) -> String {
        let nl = indent.map { "\n" + String(repeating: " ", count: $0 * (level + 1)) } ?? ""
        let close = indent.map { "\n" + String(repeating: " ", count: $0 * level) } ?? ""
        let sep = indent == nil ? "," : ","
        switch self {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d): return d.isFinite ? "\(d)" : "null"
        case let .string(s): return JSON.quote(s)
        case let .array(a):
            if a.isEmpty { return "[]" }
            return "[" + a.map { nl + $0.serialized(indent: indent, level: level + 1) }.joined(separator: sep) + close + "]"
        case let .object(kv):
            if kv.isEmpty { return "{}" }
            let colon = indent == nil ? ":" : ": "
            return "{" + kv.map { nl + JSON.quote($0.0) + colon + $0.1.serialized(indent: indent, level: level + 1) }
                .joined(separator: sep) + close + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

// Literals, so schemas and code can write defaults as `0.5`, `[8, 16]`, `"nms"`, `true`.
extension JSON: ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral,
                ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByNilLiteral {
    public init(integerLiteral v: Int) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(stringLiteral v: String) { self = .string(v) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
}
