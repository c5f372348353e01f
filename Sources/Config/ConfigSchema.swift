import NN

/// The shape of a valid config: what `Config.validate` checks before any work starts.
public indirect enum ConfigSchema {
    case any, int, number, bool, string
    /// An integer in a range (sizes, counts, divisors, intervals).
    case intRange(ClosedRange<Int>)
    /// A finite number in a range (learning rates, thresholds, ratios).
    case numberRange(ClosedRange<Double>)
    case oneOf([String])
    /// A key kept for compatibility with mmdet/mmseg configs, accepted only at the one value implemented.
    case exactly(JSON)
    case optional(ConfigSchema)
    case anyOf([ConfigSchema])
    case array(ConfigSchema, count: Int? = nil)
    case object([Field])
    /// An object whose `tag` key (e.g. "type") picks the schema of the rest; the variant must list `tag` itself.
    case tagged(String, [String: ConfigSchema])

    /// An integer ≥ 1.
    public static let positiveInt = ConfigSchema.intRange(1...Int.max)
    /// An integer ≥ 0.
    public static let nonNegativeInt = ConfigSchema.intRange(0...Int.max)
    /// A finite number ≥ 0.
    public static let nonNegativeNumber = ConfigSchema.numberRange(0...Double.greatestFiniteMagnitude)
    /// A finite number > 0 (the smallest positive double is the lower end).
    public static let positiveNumber = ConfigSchema.numberRange(Double.leastNonzeroMagnitude...Double.greatestFiniteMagnitude)
    /// A probability or fraction in [0, 1].
    public static let fraction = ConfigSchema.numberRange(0...1)

    /// Whether a value of `v`'s JSON kind (string, number, list, ...) can match this schema, whatever its content.
    func acceptsKind(of v: JSON) -> Bool {
        switch self {
        case .any: return true
        case .int, .intRange: return v.intValue != nil
        case .number, .numberRange: return v.doubleValue != nil
        case .bool: return v.boolValue != nil
        case .string, .oneOf: return v.stringValue != nil
        case let .exactly(value): return value.typeName == v.typeName
        case let .optional(inner): return v == .null || inner.acceptsKind(of: v)
        case let .anyOf(options): return options.contains { $0.acceptsKind(of: v) }
        case .array: return v.arrayValue != nil
        case .object, .tagged: return v.objectValue != nil
        }
    }

    /// Whether the schema allows exactly one value (`exactly`, a one-option `oneOf`, lists and alternatives of those):
    /// such keys exist for compatibility with mmdet/mmseg configs and are implemented by validating them.
    var isSingleValued: Bool {
        switch self {
        case .exactly: return true
        case let .oneOf(options): return options.count == 1
        case let .array(inner, _): return inner.isSingleValued
        case let .anyOf(options): return options.allSatisfy(\.isSingleValued)
        default: return false
        }
    }

    /// Whether an object schema gives a default anywhere inside (so an absent section still has values to read).
    var hasDefaults: Bool {
        guard case let .object(fields) = self else { return false }
        return fields.contains { $0.defaultValue != nil || $0.schema.hasDefaults }
    }

    /// "≥ 1", "in 0...1", ... for error messages.
    static func describe<T: Comparable & Numeric>(_ r: ClosedRange<T>) -> String {
        if let upper = r.upperBound as? Int, upper == Int.max { return "at least \(r.lowerBound)" }
        if let upper = r.upperBound as? Double, upper == .greatestFiniteMagnitude {
            if let lower = r.lowerBound as? Double, lower == .leastNonzeroMagnitude { return "above 0" }
            return "at least \(r.lowerBound)"
        }
        return "in \(r.lowerBound)...\(r.upperBound)"
    }

    /// A key of an object schema: its value's schema, whether it must be given, and the value used when it is not
    /// (filled in by `Config.filled(_:)` before a component's builder reads its section).
    public struct Field {
        public var name: String
        public var schema: ConfigSchema
        public var required: Bool
        public var defaultValue: JSON?
        public init(_ name: String, _ schema: ConfigSchema, required: Bool = false, default value: JSON? = nil) {
            self.name = name; self.schema = schema; self.required = required; defaultValue = value
        }
    }
}
