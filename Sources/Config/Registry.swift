/// One kind of component (backbone, neck, dense head, decode head, detector, segmentor, ...), as mmengine's
/// `Registry`: each type registers its name, the schema of its own config section (with defaults) and a builder.
/// A builder gets only its section (defaults filled in) and what its parent passes in `Context` (input channels,
/// `train_cfg` / `test_cfg` sections), as mmdetection's parents pass them to their children.
///
/// The type is picked by the section's `tag` key (`type`, or `arch` for backbones). Code outside the library
/// registers its own types with `register`, and configs can name them at once.
public final class Registry<Product, Context>: @unchecked Sendable {
    public typealias Builder = (_ section: Config, _ context: Context) throws -> Product

    public struct Entry {
        let fields: () -> [ConfigSchema.Field]
        public let build: Builder
        /// Computed on use: a parent's schema names its children's registries, which may gain types later.
        public var schema: ConfigSchema { .object(fields()) }
    }

    /// What the registry holds, for messages ("neck", "dense head", ...).
    public let kind: String
    /// The key that names the type in a section.
    public let tag: String
    public private(set) var entries: [String: Entry] = [:]

    public init(kind: String, tag: String = "type") {
        self.kind = kind; self.tag = tag
    }

    /// Registers (or replaces) `name`. `fields` are the section's keys besides the tag, which is added as required.
    public func register(_ name: String, fields: @autoclosure @escaping () -> [ConfigSchema.Field], build: @escaping Builder) {
        let tag = self.tag
        entries[name] = Entry(fields: { [.init(tag, .string, required: true)] + fields() }, build: build)
    }

    /// Registers one builder under several names (e.g. every ResNet depth).
    public func register(_ names: [String], fields: @autoclosure @escaping () -> [ConfigSchema.Field], build: @escaping Builder) {
        for n in names { register(n, fields: fields(), build: build) }
    }

    public var names: [String] { entries.keys.sorted() }

    /// The schema of a section of this kind: the tag picks the registered type's schema.
    public var schema: ConfigSchema { .tagged(tag, entries.mapValues(\.schema)) }

    /// Builds the component `section` describes: its type is looked up, the section validated against that type's
    /// schema and filled with its defaults, and the builder called. Errors name the file and full key.
    public func build(_ section: Config, _ context: Context) throws -> Product {
        let (entry, filled) = try resolve(section)
        return try entry.build(filled, context)
    }

    /// The registered type `section` names and the section validated against its schema and filled with its
    /// defaults: for code that reads a section without building (e.g. a dataset's test pipeline alone).
    public func resolve(_ section: Config) throws -> (entry: Entry, section: Config) {
        guard section.has(tag) else { throw section.fail(tag, "missing (the \(kind) type; known: \(names.joined(separator: ", ")))") }
        let name = try section.string(tag)
        guard let entry = entries[name] else {
            throw section.fail(tag, "unknown \(kind) '\(name)'; known: \(names.joined(separator: ", "))")
        }
        try section.validate(entry.schema)
        return (entry, section.filled(entry.schema))
    }
}

extension Registry where Context == Void {
    public func build(_ section: Config) throws -> Product { try build(section, ()) }
}
