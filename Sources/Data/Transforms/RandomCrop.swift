/// mmseg's `RandomCrop(crop_size, cat_max_ratio)`: a random window of `cropSize` (height, width), redrawn up to 10
/// times while one class covers ≥ `catMaxRatio` of its non-ignored pixels (or only one class is present), so crops
/// are not all sky or all road. Images smaller than the window are cropped to themselves.
public struct RandomCrop: Sendable {
    public var cropSize: (height: Int, width: Int)
    public var catMaxRatio: Double
    public var ignoreIndex: UInt8

    public init(cropSize: (height: Int, width: Int), catMaxRatio: Double = 0.75, ignoreIndex: UInt8 = 255) {
        self.cropSize = cropSize
        self.catMaxRatio = catMaxRatio
        self.ignoreIndex = ignoreIndex
    }

    /// (y1, y2, x1, x2) of a window (mmseg `get_crop_bbox`): offsets uniform in [0, margin].
    public func cropBox(height: Int, width: Int, rng: inout SplitMix64) -> (y1: Int, y2: Int, x1: Int, x2: Int) {
        let marginH = max(height - cropSize.height, 0), marginW = max(width - cropSize.width, 0)
        let offH = rng.randint(0, marginH + 1), offW = rng.randint(0, marginW + 1)
        return (offH, offH + cropSize.height, offW, offW + cropSize.width)
    }

    /// Whether the crop's class distribution passes mmseg's test: more than one class and max share < catMaxRatio.
    public func accepts(_ labels: LabelMap) -> Bool {
        var counts = [Int](repeating: 0, count: 256)
        for v in labels.labels { counts[Int(v)] += 1 }
        counts[Int(ignoreIndex)] = 0
        let present = counts.filter { $0 > 0 }
        guard present.count > 1 else { return false }
        return Double(present.max()!) / Double(present.reduce(0, +)) < catMaxRatio
    }

    public func callAsFunction(_ image: Image, _ labels: LabelMap, rng: inout SplitMix64) -> (Image, LabelMap) {
        var box = cropBox(height: image.height, width: image.width, rng: &rng)
        if catMaxRatio < 1 {
            for _ in 0..<10 {
                if accepts(labels.cropped(x0: box.x1, y0: box.y1, x1: box.x2, y1: box.y2)) { break }
                box = cropBox(height: image.height, width: image.width, rng: &rng)
            }
        }
        return (image.cropped(x0: box.x1, y0: box.y1, x1: box.x2, y1: box.y2),
                labels.cropped(x0: box.x1, y0: box.y1, x1: box.x2, y1: box.y2))
    }
}
