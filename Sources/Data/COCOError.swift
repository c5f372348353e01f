extension KitError {
    /// A COCO file that cannot be used, with where and why: `instances.json: annotations[17] (id 123): bbox has
    /// negative width -3`. `file` is "<memory>" for in-memory data; `record` is nil for file-level problems.
    public static func coco(file: String, record: String? = nil, problem: String) -> KitError {
        .format(record.map { "\(file): \($0): \(problem)" } ?? "\(file): \(problem)")
    }
}
