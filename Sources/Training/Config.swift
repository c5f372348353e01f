import Foundation
import NN

/// A configuration error: always names the file (or `--set` override) and the dotted key at fault.
public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// mmcv-style configuration as JSON: `_base_` (a path or a list of paths, relative to the file) are loaded first and
/// deep-merged in order, then the file itself, then `--set key.path=value` overrides. Objects merge key by key, any
/// other value replaces; an object with `"_delete_": true` replaces its base instead of merging.
///
/// Every leaf remembers where it was set (`source(of:)`), so validation errors name the file to fix.
public struct Config {
    public private(set) var root: JSON
    /// The file the config was loaded from ("<memory>" for `init(json:)`).
    public let path: String
    /// Dotted path → the file (or "--set") that last set it.
    public private(set) var origins: [String: String] = [:]

    /// Loads `path` with its `_base_` chain and applies `overrides` ("a.b=value"; value parsed as JSON, else a string).
    public static func load(path: String, overrides: [String] = []) throws -> Config {
        var visiting: [String] = []
        var origins: [String: String] = [:]
        let root = try loadFile(path, visiting: &visiting, origins: &origins)
        var config = Config(root: root, path: path, origins: origins)
        for o in overrides { try config.apply(override: o) }
        return config
    }

    /// A config from an in-memory JSON object; `_base_` paths resolve against `baseDirectory`.
    public init(json: JSON, source: String = "<memory>", baseDirectory: String = ".") throws {
        var visiting: [String] = []
        var origins: [String: String] = [:]
        root = try Config.resolve(json, file: source, directory: baseDirectory, visiting: &visiting, origins: &origins)
        path = source
        self.origins = origins
    }

    init(root: JSON, path: String, origins: [String: String]) { self.root = root; self.path = path; self.origins = origins }

    static func loadFile(_ path: String, visiting: inout [String], origins: inout [String: String]) throws -> JSON {
        let full = URL(fileURLWithPath: path).standardizedFileURL.path
        if visiting.contains(full) {
            throw ConfigError("\(path): _base_ cycle: " + (visiting + [full]).joined(separator: " -> "))
        }
        guard FileManager.default.fileExists(atPath: full) else { throw ConfigError("\(path): config file not found") }
        let json: JSON
        do { json = try JSON.load(path: full) } catch { throw ConfigError("\(error)") }
        visiting.append(full)
        defer { visiting.removeLast() }
        return try resolve(json, file: path, directory: URL(fileURLWithPath: full).deletingLastPathComponent().path,
                           visiting: &visiting, origins: &origins)
    }

    static func resolve(_ json: JSON, file: String, directory: String, visiting: inout [String],
                        origins: inout [String: String]) throws -> JSON {
        guard case var .object(kv) = json else { throw ConfigError("\(file): a config must be a JSON object, got \(json.typeName)") }
        var merged = JSON.object([])
        if let base = kv.first(where: { $0.0 == "_base_" })?.1 {
            let list: [JSON]
            switch base {
            case .string: list = [base]
            case let .array(a): list = a
            default: throw ConfigError("\(file): _base_ must be a path or a list of paths, got \(base.typeName)")
            }
            for item in list {
                guard let rel = item.stringValue else { throw ConfigError("\(file): _base_ entries must be strings, got \(item.typeName)") }
                let p = relativeToCurrentDirectory(URL(fileURLWithPath: rel.hasPrefix("/") ? rel : "\(directory)/\(rel)").standardizedFileURL.path)
                let baseJSON: JSON
                do { baseJSON = try loadFile(p, visiting: &visiting, origins: &origins) } catch let e as ConfigError {
                    throw ConfigError(e.description.hasPrefix(p) && e.description.contains("not found")
                                      ? "\(file): _base_ '\(rel)' not found (looked for \(p))" : e.description)
                }
                merged = merge(merged, baseJSON)
            }
            kv.removeAll { $0.0 == "_base_" }
        }
        let own = JSON.object(kv)
        recordOrigins(own, prefix: "", file: file, into: &origins)
        return merge(merged, own)
    }

    /// Deep merge: objects key by key (child wins), everything else replaced; `_delete_: true` replaces.
    public static func merge(_ base: JSON, _ child: JSON) -> JSON {
        guard case let .object(b) = base, case var .object(c) = child else { return child }
        if c.contains(where: { $0.0 == "_delete_" && $0.1 == .bool(true) }) {
            c.removeAll { $0.0 == "_delete_" }
            return .object(c)
        }
        var out = b
        for (k, v) in c where k != "_delete_" {
            if let i = out.firstIndex(where: { $0.0 == k }) { out[i].1 = merge(out[i].1, v) } else { out.append((k, v)) }
        }
        return .object(out)
    }

    static func recordOrigins(_ json: JSON, prefix: String, file: String, into origins: inout [String: String]) {
        if !prefix.isEmpty { origins[prefix] = file }
        if case let .object(kv) = json {
            for (k, v) in kv where k != "_delete_" { recordOrigins(v, prefix: prefix.isEmpty ? k : "\(prefix).\(k)", file: file, into: &origins) }
        }
    }

    /// Applies "a.b.c=value": the value is parsed as JSON (numbers, booleans, lists, objects), else taken as a string.
    public mutating func apply(override: String) throws {
        guard let eq = override.firstIndex(of: "="), eq != override.startIndex else {
            throw ConfigError("--set \(override): expected key.path=value")
        }
        let key = String(override[..<eq]), text = String(override[override.index(after: eq)...])
        // Wrapped in a list: json-c cannot tell where a bare top-level number ends.
        let parsed = (try? JSON.parse("[\(text)]", source: "--set"))?.arrayValue
        let value = parsed?.count == 1 ? parsed![0] : .string(text)
        try set(key, value, origin: "--set \(key)")
    }

    /// Sets a dotted path, creating objects on the way.
    public mutating func set(_ dotted: String, _ value: JSON, origin: String = "<code>") throws {
        let parts = dotted.split(separator: ".").map(String.init)
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { throw ConfigError("\(origin): bad key '\(dotted)'") }
        // `--set` replaces the whole value, so a `_delete_` marker in it has nothing left to do.
        func strip(_ v: JSON) -> JSON {
            guard case let .object(kv) = v else { return v }
            return .object(kv.filter { $0.0 != "_delete_" }.map { ($0.0, strip($0.1)) })
        }
        func put(_ node: JSON, _ i: Int) throws -> JSON {
            if i == parts.count { return strip(value) }
            var kv: [(String, JSON)]
            switch node {
            case let .object(o): kv = o
            case .null: kv = []
            default:
                throw ConfigError("\(origin): '\(parts[..<i].joined(separator: "."))' is a \(node.typeName), not an object")
            }
            if let j = kv.firstIndex(where: { $0.0 == parts[i] }) { kv[j].1 = try put(kv[j].1, i + 1) }
            else { kv.append((parts[i], try put(.null, i + 1))) }
            return .object(kv)
        }
        root = try put(root, 0)
        Config.recordOrigins(strip(value), prefix: dotted, file: origin, into: &origins)
    }

    // MARK: reading

    /// The value at a dotted path, or nil.
    public subscript(dotted: String) -> JSON? {
        var node: JSON? = root
        for p in dotted.split(separator: ".") { node = node?[String(p)] }
        if case .null? = node { return nil }
        return node
    }

    /// Where a key was set: the deepest recorded ancestor's file, else the top-level file.
    public func source(of dotted: String) -> String {
        var parts = dotted.split(separator: ".").map(String.init)
        while !parts.isEmpty {
            if let o = origins[parts.joined(separator: ".")] { return o }
            parts.removeLast()
        }
        return path
    }

    func fail(_ key: String, _ problem: String) -> ConfigError { ConfigError("\(source(of: key)): \(key): \(problem)") }

    public func int(_ key: String, default d: Int? = nil) throws -> Int {
        guard let v = self[key] else { if let d { return d }; throw ConfigError("\(path): missing key \(key)") }
        guard let i = v.intValue else { throw fail(key, "expected an integer, got \(v.typeName)") }
        return i
    }
    public func double(_ key: String, default d: Double? = nil) throws -> Double {
        guard let v = self[key] else { if let d { return d }; throw ConfigError("\(path): missing key \(key)") }
        guard let x = v.doubleValue else { throw fail(key, "expected a number, got \(v.typeName)") }
        return x
    }
    public func string(_ key: String, default d: String? = nil) throws -> String {
        guard let v = self[key] else { if let d { return d }; throw ConfigError("\(path): missing key \(key)") }
        guard let s = v.stringValue else { throw fail(key, "expected a string, got \(v.typeName)") }
        return s
    }
    public func optionalString(_ key: String) throws -> String? { self[key] == nil ? nil : try string(key) }
    public func bool(_ key: String, default d: Bool? = nil) throws -> Bool {
        guard let v = self[key] else { if let d { return d }; throw ConfigError("\(path): missing key \(key)") }
        guard let b = v.boolValue else { throw fail(key, "expected true or false, got \(v.typeName)") }
        return b
    }
    public func doubles(_ key: String, default d: [Double]? = nil) throws -> [Double] {
        guard let v = self[key] else { if let d { return d }; throw ConfigError("\(path): missing key \(key)") }
        guard let a = v.arrayValue, let xs = Optional(a.compactMap(\.doubleValue)), xs.count == a.count else {
            throw fail(key, "expected a list of numbers, got \(v.typeName)")
        }
        return xs
    }
    public func ints(_ key: String, default d: [Int]? = nil) throws -> [Int] {
        guard let v = self[key] else { if let d { return d }; throw ConfigError("\(path): missing key \(key)") }
        guard let a = v.arrayValue, let xs = Optional(a.compactMap(\.intValue)), xs.count == a.count else {
            throw fail(key, "expected a list of integers, got \(v.typeName)")
        }
        return xs
    }

    /// The merged config as indented JSON (what a run actually used; det-train writes it to the work dir).
    public func serialized() -> String { root.serialized(indent: 2) + "\n" }

    // MARK: validation

    /// Checks every key and type against `schema`; the first problem is thrown naming its file and key.
    public func validate(_ schema: ConfigSchema) throws { try check(root, schema, key: "") }

    func check(_ v: JSON, _ s: ConfigSchema, key: String) throws {
        let name = key.isEmpty ? "(root)" : key
        switch s {
        case .any: return
        case .int: if v.intValue == nil { throw fail(key, "expected an integer, got \(v.typeName)") }
        case .number: if v.doubleValue == nil { throw fail(key, "expected a number, got \(v.typeName)") }
        case .bool: if v.boolValue == nil { throw fail(key, "expected true or false, got \(v.typeName)") }
        case .string: if v.stringValue == nil { throw fail(key, "expected a string, got \(v.typeName)") }
        case let .oneOf(options):
            guard let str = v.stringValue, options.contains(str) else {
                throw fail(key, "expected one of \(options.map { "'\($0)'" }.joined(separator: ", ")), got \(v.serialized())")
            }
        case let .optional(inner): if v != .null { try check(v, inner, key: key) }
        case let .anyOf(options):
            var last: Error?
            for o in options { do { try check(v, o, key: key); return } catch { last = error } }
            throw last ?? fail(key, "no alternative matches")
        case let .array(inner, count):
            guard let a = v.arrayValue else { throw fail(key, "expected a list, got \(v.typeName)") }
            if let count, a.count != count { throw fail(key, "expected \(count) entries, got \(a.count)") }
            for (i, e) in a.enumerated() { try check(e, inner, key: "\(key)[\(i)]") }
        case let .object(fields):
            guard let kv = v.objectValue else { throw fail(key, "expected an object, got \(v.typeName)") }
            for (k, child) in kv {
                let path = key.isEmpty ? k : "\(key).\(k)"
                guard let f = fields.first(where: { $0.name == k }) else {
                    throw ConfigError("\(source(of: path)): unknown key \(path) (known keys of \(name): "
                                      + fields.map(\.name).joined(separator: ", ") + ")")
                }
                try check(child, f.schema, key: path)
            }
            for f in fields where f.required && !kv.contains(where: { $0.0 == f.name && $0.1 != .null }) {
                throw ConfigError("\(source(of: key)): missing key \(key.isEmpty ? f.name : "\(key).\(f.name)")")
            }
        case let .tagged(tag, variants):
            guard let kv = v.objectValue else { throw fail(key, "expected an object, got \(v.typeName)") }
            guard let t = kv.first(where: { $0.0 == tag })?.1.stringValue else {
                throw ConfigError("\(source(of: key)): missing key \(key).\(tag)")
            }
            guard let variant = variants[t] else {
                throw fail("\(key).\(tag)", "unknown \(tag) '\(t)'; known: \(variants.keys.sorted().joined(separator: ", "))")
            }
            try check(v, variant, key: key)
        }
    }
}

/// `path` relative to the working directory when it lies below it (shorter error messages).
func relativeToCurrentDirectory(_ path: String) -> String {
    let cwd = FileManager.default.currentDirectoryPath + "/"
    return path.hasPrefix(cwd) ? String(path.dropFirst(cwd.count)) : path
}

/// The shape of a valid config: what `Config.validate` checks before any work starts.
public indirect enum ConfigSchema {
    case any, int, number, bool, string
    case oneOf([String])
    case optional(ConfigSchema)
    case anyOf([ConfigSchema])
    case array(ConfigSchema, count: Int? = nil)
    case object([Field])
    /// An object whose `tag` key (e.g. "type") picks the schema of the rest; the variant must list `tag` itself.
    case tagged(String, [String: ConfigSchema])

    public struct Field {
        public var name: String
        public var schema: ConfigSchema
        public var required: Bool
        public init(_ name: String, _ schema: ConfigSchema, required: Bool = false) {
            self.name = name; self.schema = schema; self.required = required
        }
    }

    /// Adds fields to an object schema (later fields replace same-named ones).
    public func adding(_ more: [Field]) -> ConfigSchema {
        guard case let .object(f) = self else { return self }
        return .object(f.filter { a in !more.contains { $0.name == a.name } } + more)
    }
}
