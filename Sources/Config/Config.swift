@_exported import enum Engine.KitError
import Foundation
@_exported import NN

/// mmcv-style configuration as JSON: `_base_` (a path or a list of paths, relative to the file) are loaded first and
/// deep-merged in order, then the file itself, then `--set key.path=value` overrides. Objects merge key by key, any
/// other value replaces; an object with `"_delete_": true` replaces its base instead of merging.
///
/// Every leaf remembers where it was set (`source(of:)`), so validation errors name the file to fix.
///
/// A `Config` can be a *section* of a larger one (`section("model.neck")`): its accessors take keys relative to
/// the section while errors still name the full dotted key, so a component's builder sees only its own section.
/// Every read is recorded (shared by a config and its sections), so `unreadKeys()` can prove that each key a user
/// wrote was used.
public struct Config {
    public private(set) var root: JSON
    /// The file the config was loaded from ("<memory>" for `init(json:)`).
    public let path: String
    /// Dotted path → the file (or "--set") that last set it.
    public private(set) var origins: [String: String] = [:]
    /// The dotted key this config is a section of ("" for a whole config).
    public private(set) var prefix = ""
    let reads = ReadLog()

    final class ReadLog: @unchecked Sendable { var keys: Set<String> = [] }

    /// The section at `key` (relative to this one): keys given to its accessors are relative to it.
    public func section(_ key: String) -> Config {
        var c = self
        c.prefix = full(key)
        return c
    }

    /// The full dotted key of `key` (relative to this section).
    public func full(_ key: String) -> String { prefix.isEmpty ? key : key.isEmpty ? prefix : "\(prefix).\(key)" }

    /// Whether `key` is set (not null), without counting as a read.
    public func has(_ key: String) -> Bool { node(full(key)) != nil }

    /// Leaf keys (scalars and lists) present in this config that no accessor has read, e.g. keys a schema accepts
    /// but nothing implements.
    public func unreadKeys() -> [String] {
        var out: [String] = []
        func walk(_ v: JSON, _ key: String) {
            if reads.keys.contains(key) { return }
            if case let .object(kv) = v {   // an empty object sets nothing
                for (k, child) in kv where k != "_delete_" { walk(child, key.isEmpty ? k : "\(key).\(k)") }
            } else if v != .null, !key.isEmpty {
                out.append(key)
            }
        }
        walk(node(prefix) ?? .null, prefix)
        return out
    }

    /// This section with the schema's defaults filled in where a key is absent (recorded as set by "<default>").
    public func filled(_ schema: ConfigSchema) -> Config {
        guard case let .object(fields) = schema else { return self }
        var c = self
        for f in fields {
            if let d = f.defaultValue, !has(f.name) {
                try? c.set(f.name, d, origin: "<default>")
            } else if case .object = f.schema, has(f.name) || f.schema.hasDefaults {
                // A nested object: filled where given, created from its defaults where absent.
                if !c.has(f.name) { try? c.set(f.name, .object([]), origin: "<default>") }
                let sub = c.section(f.name).filled(f.schema)
                c.root = sub.root; c.origins = sub.origins
            }
        }
        return c
    }

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
            throw KitError.config("\(path): _base_ cycle: " + (visiting + [full]).joined(separator: " -> "))
        }
        guard FileManager.default.fileExists(atPath: full) else { throw KitError.config("\(path): config file not found") }
        let json: JSON
        do { json = try JSON.load(path: full) } catch { throw KitError.config("\(error)") }
        visiting.append(full)
        defer { visiting.removeLast() }
        return try resolve(json, file: path, directory: URL(fileURLWithPath: full).deletingLastPathComponent().path,
                           visiting: &visiting, origins: &origins)
    }

    static func resolve(_ json: JSON, file: String, directory: String, visiting: inout [String],
                        origins: inout [String: String]) throws -> JSON {
        guard case var .object(kv) = json else { throw KitError.config("\(file): a config must be a JSON object, got \(json.typeName)") }
        var merged = JSON.object([])
        if let base = kv.first(where: { $0.0 == "_base_" })?.1 {
            let list: [JSON]
            switch base {
            case .string: list = [base]
            case let .array(a): list = a
            default: throw KitError.config("\(file): _base_ must be a path or a list of paths, got \(base.typeName)")
            }
            for item in list {
                guard let rel = item.stringValue else { throw KitError.config("\(file): _base_ entries must be strings, got \(item.typeName)") }
                let p = relativeToCurrentDirectory(URL(fileURLWithPath: rel.hasPrefix("/") ? rel : "\(directory)/\(rel)").standardizedFileURL.path)
                let baseJSON: JSON
                do { baseJSON = try loadFile(p, visiting: &visiting, origins: &origins) } catch let e as KitError {
                    throw KitError.config(e.description.hasPrefix(p) && e.description.contains("not found")
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
            throw KitError.config("--set \(override): expected key.path=value")
        }
        let key = String(override[..<eq]), text = String(override[override.index(after: eq)...])
        // Wrapped in a list: json-c cannot tell where a bare top-level number ends.
        let parsed = (try? JSON.parse("[\(text)]", source: "--set"))?.arrayValue
        let value = parsed?.count == 1 ? parsed![0] : .string(text)
        try set(key, value, origin: "--set \(key)")
    }

    /// Sets a dotted path (relative to this section), creating objects on the way.
    public mutating func set(_ key: String, _ value: JSON, origin: String = "<code>") throws {
        let dotted = full(key)
        let parts = dotted.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !parts.contains(where: \.isEmpty) else { throw KitError.config("\(origin): bad key '\(dotted)' (an empty name between dots)") }
        // `--set` replaces the whole value, so a `_delete_` marker in it has nothing left to do.
        func strip(_ v: JSON) -> JSON {
            guard case let .object(kv) = v else { return v }
            return .object(kv.filter { $0.0 != "_delete_" }.map { ($0.0, strip($0.1)) })
        }
        func put(_ node: JSON, _ i: Int) throws -> JSON {
            if i == parts.count { return strip(value) }
            var kv: [(String, JSON)]
            switch node {
            case var .array(a) where Int(parts[i]).map(a.indices.contains) == true:
                a[Int(parts[i])!] = try put(a[Int(parts[i])!], i + 1)
                return .array(a)
            case let .object(o): kv = o
            case .null: kv = []
            default:
                throw KitError.config("\(origin): '\(parts[..<i].joined(separator: "."))' is a \(node.typeName), not an object")
            }
            if let j = kv.firstIndex(where: { $0.0 == parts[i] }) { kv[j].1 = try put(kv[j].1, i + 1) }
            else {
                // A key this override creates is the override's to answer for in messages.
                created.append(parts[...i].joined(separator: "."))
                kv.append((parts[i], try put(.null, i + 1)))
            }
            return .object(kv)
        }
        var created: [String] = []
        root = try put(root, 0)
        for key in created where origins[key] == nil { origins[key] = origin }
        Config.recordOrigins(strip(value), prefix: dotted, file: origin, into: &origins)
    }

    // MARK: reading

    /// The value at a dotted path (relative to this section), or nil; counts as a read of that key.
    public subscript(key: String) -> JSON? {
        let k = full(key)
        reads.keys.insert(k)
        return node(k)
    }

    func node(_ dotted: String) -> JSON? {
        var node: JSON? = root
        for p in dotted.split(separator: ".") { node = node?[String(p)] }
        if case .null? = node { return nil }
        return node
    }

    /// Where a key (relative to this section) was set: the deepest recorded ancestor's file, else the top-level file.
    public func source(of key: String) -> String {
        var parts = full(key).split(separator: ".").map(String.init)
        while !parts.isEmpty {
            if let o = origins[parts.joined(separator: ".")] { return o }
            parts.removeLast()
        }
        return path
    }

    /// A config error about `key` (relative to this section), naming its file and full key.
    public func fail(_ key: String, _ problem: String) -> KitError { .config("\(source(of: key)): \(full(key)): \(problem)") }

    func missing(_ key: String) -> KitError { .config("\(source(of: key)): missing key \(full(key))") }

    public func int(_ key: String, default d: Int? = nil) throws -> Int {
        guard let v = self[key] else { if let d { return d }; throw missing(key) }
        guard let i = v.intValue else { throw fail(key, "expected an integer, got \(v.typeName)") }
        return i
    }
    public func double(_ key: String, default d: Double? = nil) throws -> Double {
        guard let v = self[key] else { if let d { return d }; throw missing(key) }
        guard let x = v.doubleValue else { throw fail(key, "expected a number, got \(v.typeName)") }
        return x
    }
    public func string(_ key: String, default d: String? = nil) throws -> String {
        guard let v = self[key] else { if let d { return d }; throw missing(key) }
        guard let s = v.stringValue else { throw fail(key, "expected a string, got \(v.typeName)") }
        return s
    }
    public func optionalString(_ key: String) throws -> String? { self[key] == nil ? nil : try string(key) }
    public func bool(_ key: String, default d: Bool? = nil) throws -> Bool {
        guard let v = self[key] else { if let d { return d }; throw missing(key) }
        guard let b = v.boolValue else { throw fail(key, "expected true or false, got \(v.typeName)") }
        return b
    }
    public func doubles(_ key: String, default d: [Double]? = nil) throws -> [Double] {
        guard let v = self[key] else { if let d { return d }; throw missing(key) }
        guard let a = v.arrayValue, let xs = Optional(a.compactMap(\.doubleValue)), xs.count == a.count else {
            throw fail(key, "expected a list of numbers, got \(v.typeName)")
        }
        return xs
    }
    public func ints(_ key: String, default d: [Int]? = nil) throws -> [Int] {
        guard let v = self[key] else { if let d { return d }; throw missing(key) }
        guard let a = v.arrayValue, let xs = Optional(a.compactMap(\.intValue)), xs.count == a.count else {
            throw fail(key, "expected a list of integers, got \(v.typeName)")
        }
        return xs
    }

    /// The merged config as indented JSON (what a run actually used; det-train writes it to the work dir).
    public func serialized() -> String { root.serialized(indent: 2) + "\n" }

    // MARK: validation

    /// Checks every key and type against `schema`; the first problem is thrown naming its file and key.
    public func validate(_ schema: ConfigSchema) throws { try check(node(prefix) ?? .object([]), schema, key: "") }

    func check(_ v: JSON, _ s: ConfigSchema, key: String) throws {
        let name = full(key).isEmpty ? "(root)" : full(key)
        // A key whose schema allows one value is fully implemented once it validates: nothing needs to read it.
        if s.isSingleValued { reads.keys.insert(full(key)) }
        switch s {
        case .any: return
        case .int: if v.intValue == nil { throw fail(key, "expected an integer, got \(v.typeName)") }
        case .number: if v.doubleValue == nil { throw fail(key, "expected a number, got \(v.typeName)") }
        case .bool: if v.boolValue == nil { throw fail(key, "expected true or false, got \(v.typeName)") }
        case .string: if v.stringValue == nil { throw fail(key, "expected a string, got \(v.typeName)") }
        case let .exactly(value):
            if v != value { throw fail(key, "only \(value.serialized()) is implemented, got \(v.serialized())") }
        case let .intRange(r):
            guard let i = v.intValue else { throw fail(key, "expected an integer, got \(v.typeName)") }
            if !r.contains(i) { throw fail(key, "must be \(ConfigSchema.describe(r)), got \(i)") }
        case let .numberRange(r):
            guard let x = v.doubleValue else { throw fail(key, "expected a number, got \(v.typeName)") }
            if !x.isFinite || !r.contains(x) {
                // Serialized JSON has no NaN or infinity (they print as null): name them.
                throw fail(key, "must be a finite number \(ConfigSchema.describe(r)), got \(x.isFinite ? v.serialized() : "\(x)")")
            }
        case let .oneOf(options):
            guard let str = v.stringValue, options.contains(str) else {
                throw fail(key, "expected one of \(options.map { "'\($0)'" }.joined(separator: ", ")), got \(v.serialized())")
            }
        case let .optional(inner): if v != .null { try check(v, inner, key: key) }
        case let .anyOf(options):
            var errors: [Error] = []
            for o in options { do { try check(v, o, key: key); return } catch { errors.append(error) } }
            // The error of the first alternative of the value's own kind (a string's against the string choices, not
            // "expected a list"); the last one when none is.
            let sameKind = zip(options, errors).first { $0.0.acceptsKind(of: v) }
            throw sameKind?.1 ?? errors.last ?? fail(key, "no alternative matches")
        case let .array(inner, count):
            guard let a = v.arrayValue else { throw fail(key, "expected a list, got \(v.typeName)") }
            if let count, a.count != count { throw fail(key, "expected \(count) entries, got \(a.count)") }
            for (i, e) in a.enumerated() { try check(e, inner, key: "\(key)[\(i)]") }
        case let .object(fields):
            guard let kv = v.objectValue else { throw fail(key, "expected an object, got \(v.typeName)") }
            for (k, child) in kv {
                let path = key.isEmpty ? k : "\(key).\(k)"
                guard let f = fields.first(where: { $0.name == k }) else {
                    throw KitError.config("\(source(of: path)): unknown key \(full(path)) (known keys of \(name): "
                                      + fields.map(\.name).joined(separator: ", ") + ")")
                }
                try check(child, f.schema, key: path)
            }
            for f in fields where f.required && !kv.contains(where: { $0.0 == f.name && $0.1 != .null }) {
                throw missing(key.isEmpty ? f.name : "\(key).\(f.name)")
            }
        case let .tagged(tag, variants):
            guard let kv = v.objectValue else { throw fail(key, "expected an object, got \(v.typeName)") }
            guard let t = kv.first(where: { $0.0 == tag })?.1.stringValue else {
                throw missing(key.isEmpty ? tag : "\(key).\(tag)")
            }
            guard let variant = variants[t] else {
                throw fail(key.isEmpty ? tag : "\(key).\(tag)", "unknown \(tag) '\(t)'; known: \(variants.keys.sorted().joined(separator: ", "))")
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
