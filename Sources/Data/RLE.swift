/// A binary mask of `h` x `w` pixels as run lengths over its column-major (Fortran) pixel order,
/// alternating 0s and 1s and starting with a run of 0s — pycocotools' `RLE`.
public struct RLE: Equatable, Sendable {
    public var h: Int
    public var w: Int
    public var counts: [UInt32]

    public init(h: Int, w: Int, counts: [UInt32]) {
        self.h = h
        self.w = w
        self.counts = counts
    }
}

/// A box `[x, y, width, height]` in pixels, as COCO writes it.
public struct BBox: Equatable, Sendable {
    public var x: Double
    public var y: Double
    public var w: Double
    public var h: Double

    public init(x: Double, y: Double, w: Double, h: Double) {
        self.x = x
        self.y = y
        self.w = w
        self.h = h
    }

    public init(_ xywh: [Double]) {
        self.init(x: xywh[0], y: xywh[1], w: xywh[2], h: xywh[3])
    }

    public var array: [Double] { [x, y, w, h] }
}
