/// A COCO file that cannot be used, with where and why: `instances.json: annotations[17] (id 123): bbox has negative width -3`.
public struct COCOError: Error, CustomStringConvertible, Sendable {
    /// The file (or "<memory>" for in-memory data).
    public var file: String
    /// The offending record, e.g. `annotations[17] (id 123)`; nil for file-level problems.
    public var record: String?
    public var problem: String

    public init(file: String, record: String? = nil, problem: String) {
        self.file = file
        self.record = record
        self.problem = problem
    }

    public var description: String {
        if let record { return "\(file): \(record): \(problem)" }
        return "\(file): \(problem)"
    }
}
