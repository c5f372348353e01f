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
    public var masks: [BitmapMask]?
    public var count: Int { scores.count }

    public init(boxes: [Float] = [], scores: [Float] = [], labels: [Int] = [], masks: [BitmapMask]? = nil) {
        self.boxes = boxes; self.scores = scores; self.labels = labels; self.masks = masks
    }
}

