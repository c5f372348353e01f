/// mmdet/mmseg `img_metas` for one image: what the model and the evaluator need to map predictions back.
/// Shapes are (height, width) as in mmdet; `scaleFactor` is [w_scale, h_scale, w_scale, h_scale].
public struct ImageMeta: Equatable, Sendable {
    public var filename: String
    public var oriShape: (height: Int, width: Int)
    /// After resize (and crop), before padding.
    public var imgShape: (height: Int, width: Int)
    /// After padding: the size of the tensor the network sees.
    public var padShape: (height: Int, width: Int)
    public var scaleFactor: [Float]
    public var flip: Bool
    public var flipDirection: String?

    public init(filename: String, oriShape: (height: Int, width: Int)) {
        self.filename = filename
        self.oriShape = oriShape
        imgShape = oriShape
        padShape = oriShape
        scaleFactor = [1, 1, 1, 1]
        flip = false
        flipDirection = nil
    }

    public static func == (a: ImageMeta, b: ImageMeta) -> Bool {
        a.filename == b.filename && a.oriShape == b.oriShape && a.imgShape == b.imgShape && a.padShape == b.padShape
            && a.scaleFactor == b.scaleFactor && a.flip == b.flip && a.flipDirection == b.flipDirection
    }
}
