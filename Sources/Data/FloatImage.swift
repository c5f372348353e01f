/// A normalised float image, planar CHW: `data[(c * height + y) * width + x]` — the layout the network consumes.
public struct FloatImage: Equatable, Sendable {
    public let channels: Int
    public let width: Int
    public let height: Int
    /// `channels * height * width` values.
    public var data: [Float]

    public init(channels: Int = 3, width: Int, height: Int, data: [Float]) {
        precondition(data.count == channels * width * height, "expected \(channels * width * height) values")
        self.channels = channels
        self.width = width
        self.height = height
        self.data = data
    }

    public subscript(c: Int, y: Int, x: Int) -> Float {
        get { data[(c * height + y) * width + x] }
        set { data[(c * height + y) * width + x] = newValue }
    }
}
