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
    public static func parse(_ bytes: UnsafeRawBufferPointer, source: String) throws -> JSON {
        guard let tok = json_tokener_new() else { throw KitError.format("\(source): cannot allocate a JSON parser") }
        defer { json_tokener_free(tok) }
        let obj = json_tokener_parse_ex(tok, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count))
        let err = json_tokener_get_error(tok)
        guard err == json_tokener_success, let obj else {
            let reason = err == json_tokener_continue ? "unexpected end of input" : String(cString: json_tokener_error_desc(err))
            throw KitError.format("\(source): malformed JSON: \(reason) (at byte \(json_tokener_get_parse_end(tok)))")
        }
        defer { json_object_put(obj) }
        if Int(json_tokener_get_parse_end(tok)) < bytes.count,
           bytes[Int(json_tokener_get_parse_end(tok))...].contains(where: { !" \n\r\t\0".utf8.contains($0) }) {
            throw KitError.format("\(source): malformed JSON: trailing characters after the value")
        }
        return convert(obj)
    }

    public static func parse(_ text: String, source: String = "<string>") throws -> JSON {
        var t = text
        return try t.withUTF8 { try parse(UnsafeRawBufferPointer($0), source: source) }
    }

    public static func load(path: String) throws -> JSON {
        guard let data = FileManager.default.contents(atPath: path) else { throw KitError.io("\(path): cannot read file") }
        return try data.withUnsafeBytes { try parse($0, source: path) }
    }

    static func convert(_ o: OpaquePointer?) -> JSON {
        guard let o else { return .null }
        switch json_object_get_type(o) {
        case json_type_null: return .null
        case json_type_boolean: return .bool(json_object_get_boolean(o) != 0)
        case json_type_int: return .int(Int(json_object_get_int64(o)))
        case json_type_double: return .double(json_object_get_double(o))
        case json_type_string: return .string(String(cString: json_object_get_string(o)))
        case json_type_array:
            let n = json_object_array_length(o)
            return .array((0..<n).map { convert(json_object_array_get_idx(o, $0)) })
        case json_type_object:
            var out: [(String, JSON)] = []
            var it = json_object_iter_begin(o), end = json_object_iter_end(o)
            while json_object_iter_equal(&it, &end) == 0 {
                out.append((String(cString: json_object_iter_peek_name(&it)), convert(json_object_iter_peek_value(&it))))
                json_object_iter_next(&it)
            }
            return .object(out)
        default: return .null
        }
    }

    // MARK: access

    public subscript(key: String) -> JSON? {
        if case let .object(kv) = self { return kv.last(where: { $0.0 == key })?.1 }
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
