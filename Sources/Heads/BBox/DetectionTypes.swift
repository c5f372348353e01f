/// The types every detector shares: ground truth in, detections out.

/// A binary mask, row-major (`height` rows of `width` bytes, 0 or 1).
public struct BitmapMask: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var data: [UInt8]

    public init(width: Int, height: Int, data: [UInt8]) {
        precondition(data.count == width * height, "mask data must be width × height bytes")
        self.width = width; self.height = height; self.data = data
    }
}

/// Ground truth of one training image, in the (resized, flipped, padded) network input's pixel coordinates.
public struct DetectionTarget: Sendable {
    /// Flat [x1, y1, x2, y2] · count.
    public var boxes: [Float]
    /// Contiguous 0-based class per box.
    public var labels: [Int]
    /// Crowd / ignore regions (flat boxes); anchors mostly inside them are neither positive nor negative.
    public var ignore: [Float]
    /// (height, width) of the image before padding.
    public var imgShape: (height: Int, width: Int)
    /// Instance masks, one per box, at the network input's (padded) size; nil when the dataset has none.
    public var masks: [BitmapMask]?

    public init(boxes: [Float], labels: [Int], ignore: [Float] = [], imgShape: (height: Int, width: Int), masks: [BitmapMask]? = nil) {
        precondition(boxes.count == 4 * labels.count, "one box per label")
        precondition(masks == nil || masks!.count == labels.count, "one mask per box")
        self.boxes = boxes; self.labels = labels; self.ignore = ignore; self.imgShape = imgShape; self.masks = masks
    }
}

/// Detections of one image in original-image coordinates, highest score first.
public struct ImageDetections: Sendable, Equatable {
    /// Flat [x1, y1, x2, y2] · count.
    public var boxes: [Float]
    public var scores: [Float]
    /// Contiguous 0-based class per detection.
    public var labels: [Int]
    /// Binary masks at the original image size, one per detection, from models that predict masks; else nil.
    public var masks: [MaskRuns]?
    public var count: Int { scores.count }

    /// The detections scoring at least `minScore`, in order.
    public func scoring(atLeast minScore: Float) -> ImageDetections {
        let keep = scores.indices.filter { scores[$0] >= minScore }
        return ImageDetections(boxes: keep.flatMap { boxes[(4 * $0)..<(4 * $0 + 4)] }, scores: keep.map { scores[$0] },
                               labels: keep.map { labels[$0] }, masks: masks.map { m in keep.map { m[$0] } })
    }

    public init(boxes: [Float] = [], scores: [Float] = [], labels: [Int] = [], masks: [MaskRuns]? = nil) {
        self.boxes = boxes; self.scores = scores; self.labels = labels; self.masks = masks
    }
}


/// A binary mask of a `width` × `height` image as pycocotools' uncompressed RLE: column-major run lengths, alternating
/// 0s and 1s and starting with 0s. Predicted masks are kept this way (a full bitmap per detection would hold
/// 100 × H × W bytes per image).
public struct MaskRuns: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var counts: [UInt32]

    public init(width: Int, height: Int, counts: [UInt32]) {
        self.width = width; self.height = height; self.counts = counts
    }

    /// The runs of an image that is 0 except for the row-major `region` (`regionWidth` × `regionHeight`, 0/1)
    /// whose top-left pixel is (`x`, `y`).
    public init(width: Int, height: Int, region: [UInt8], x: Int, y: Int, regionWidth rw: Int, regionHeight rh: Int) {
        precondition(region.count == rw * rh && x >= 0 && y >= 0 && x + rw <= width && y + rh <= height, "MaskRuns: region outside the image")
        var counts: [UInt32] = [], current: UInt8 = 0, run = 0
        func add(_ v: UInt8, _ n: Int) {
            if v != current { counts.append(UInt32(run)); current = v; run = 0 }
            run += n
        }
        for col in 0..<width {
            guard col >= x && col < x + rw else { add(0, height); continue }
            add(0, y)
            for r in 0..<rh { add(region[r * rw + col - x], 1) }
            add(0, height - y - rh)
        }
        counts.append(UInt32(run))
        self.init(width: width, height: height, counts: counts)
    }

    /// The mask row-major (`height` rows of `width` bytes, 0 or 1).
    public func bitmap() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: width * height)
        var pos = 0, value: UInt8 = 0
        for c in counts {
            if value == 1 {
                for p in pos..<min(pos + Int(c), width * height) { out[(p % height) * width + p / height] = 1 }
            }
            pos += Int(c); value ^= 1
        }
        return out
    }

    /// Pixels set.
    public var area: Int { stride(from: 1, to: counts.count, by: 2).reduce(0) { $0 + Int(counts[$1]) } }
}
