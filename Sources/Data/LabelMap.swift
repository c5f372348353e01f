/// A semantic label map: one 8-bit class id per pixel, row-major `labels[y * width + x]`; 255 is "ignore" by
/// convention (mmseg's `ignore_index`).
public struct LabelMap: Equatable, Sendable {
    public static let ignoreIndex: UInt8 = 255
    public let width: Int
    public let height: Int
    /// `height * width` values.
    public var labels: [UInt8]

    public init(width: Int, height: Int, labels: [UInt8]) {
        precondition(width > 0 && height > 0, "label map size must be positive, got \(width)x\(height)")
        precondition(labels.count == width * height, "expected \(width * height) labels, got \(labels.count)")
        self.width = width
        self.height = height
        self.labels = labels
    }

    public init(width: Int, height: Int, fill: UInt8) {
        self.init(width: width, height: height, labels: [UInt8](repeating: fill, count: width * height))
    }

    public subscript(y: Int, x: Int) -> UInt8 {
        get { labels[y * width + x] }
        set { labels[y * width + x] = newValue }
    }

    /// mmseg's `LoadAnnotations(reduce_zero_label=True)` in uint8 arithmetic: 0 → 255, v → v − 1, and the 254 that a
    /// raw 255 became goes back to 255, so raw 0 ("other") and raw 255 are both ignored.
    public func reducingZeroLabel() -> LabelMap {
        var out = self
        out.labels = labels.map { v in v == 0 || v == 255 ? 255 : v - 1 }
        return out
    }
}
