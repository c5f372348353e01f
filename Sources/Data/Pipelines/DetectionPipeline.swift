/// The network-ready form of one detection sample (after mmdet's `DefaultFormatBundle`).
public struct DetectionInput: Sendable {
    /// Normalised, padded CHW image (3 x padShape.height x padShape.width).
    public var image: FloatImage
    public var gtBboxes: [Float]
    public var gtLabels: [Int]
    public var gtBboxesIgnore: [Float]
    /// Padded to the image tensor's size.
    public var gtMasks: BitmapMasks?
    public var gtPolygons: PolygonMasks?
    public var meta: ImageMeta

    public init(image: FloatImage, gtBboxes: [Float], gtLabels: [Int], gtBboxesIgnore: [Float] = [],
                gtMasks: BitmapMasks? = nil, gtPolygons: PolygonMasks? = nil, meta: ImageMeta) {
        self.image = image
        self.gtBboxes = gtBboxes
        self.gtLabels = gtLabels
        self.gtBboxesIgnore = gtBboxesIgnore
        self.gtMasks = gtMasks
        self.gtPolygons = gtPolygons
        self.meta = meta
    }
}

/// mmdet's standard train/test pipeline for COCO detectors:
/// `Resize(img_scale=(1333, 800), keep_ratio=True) → RandomFlip(flip_ratio=0.5) → Normalize(ImageNet, to_rgb) →
/// Pad(size_divisor=32) → DefaultFormatBundle`. Test mode skips the flip. With `trainScales`, training resizes to
/// one of them drawn at random instead (mmdet's `RandomChoiceResize(scales, keep_ratio)`, the Swin 3x recipe).
public struct DetectionPipeline: Sendable {
    /// (long, short) edge limits when `keepRatio`, else the exact (width, height).
    public var imgScale: (Int, Int) = (1333, 800)
    /// Training scales to draw from (each as `imgScale`); empty: always `imgScale`.
    public var trainScales: [(Int, Int)] = []
    public var keepRatio = true
    public var flipRatio = 0.5
    public var normalize = Normalize()
    public var sizeDivisor = 32
    /// mmdet's `bbox_clip_border`: clip resized boxes to the image.
    public var clipBorder = true
    public var training = true
    /// mmdet's `LoadAnnotations(with_mask=...)`: when false the samples' instance masks are dropped on entry (a
    /// box-only detector has no use for them).
    public var withMask = true

    public init(imgScale: (Int, Int) = (1333, 800), keepRatio: Bool = true, flipRatio: Double = 0.5,
                sizeDivisor: Int = 32, training: Bool = true, withMask: Bool = true) {
        self.withMask = withMask
        self.imgScale = imgScale
        self.keepRatio = keepRatio
        self.flipRatio = flipRatio
        self.sizeDivisor = sizeDivisor
        self.training = training
    }

    /// The (height, width) of the network input an image of this size becomes (resized, then padded).
    public func inputSize(width w: Int, height h: Int) -> (height: Int, width: Int) {
        let (nw, nh) = keepRatio ? { let s = rescaleSize(width: w, height: h, scale: imgScale); return (s.width, s.height) }()
            : (imgScale.0, imgScale.1)
        let (pw, ph) = Pad.sizeToMultiple(width: nw, height: nh, divisor: sizeDivisor)
        return (ph, pw)
    }

    /// Runs the pipeline; `rng` decides the flip (one draw in training mode) and, with `trainScales`, the scale (one
    /// draw before it).
    public func callAsFunction(_ sample: DetectionSample, rng: inout SplitMix64) -> DetectionInput {
        var meta = ImageMeta(filename: sample.filename, oriShape: (sample.image.height, sample.image.width))

        // Resize (RandomChoiceResize in training when there are scales to choose from).
        let (w, h) = (sample.image.width, sample.image.height)
        let scale = training && !trainScales.isEmpty ? trainScales[rng.randint(0, trainScales.count)] : imgScale
        let (nw, nh) = keepRatio ? { let s = rescaleSize(width: w, height: h, scale: scale); return (s.width, s.height) }()
            : (scale.0, scale.1)
        var image = sample.image.resized(width: nw, height: nh)
        let ws = Float(nw) / Float(w), hs = Float(nh) / Float(h)
        meta.scaleFactor = [ws, hs, ws, hs]
        meta.imgShape = (nh, nw)
        var boxes = scaleBoxes(sample.gtBboxes, ws, hs, width: nw, height: nh)
        var ignore = scaleBoxes(sample.gtBboxesIgnore, ws, hs, width: nw, height: nh)
        var masks = withMask ? sample.gtMasks?.resized(width: nw, height: nh) : nil
        var polygons = withMask ? sample.gtPolygons?.resized(width: nw, height: nh) : nil

        // RandomFlip (horizontal).
        if training && flipRatio > 0 && rng.bernoulli(flipRatio) {
            meta.flip = true
            meta.flipDirection = "horizontal"
            image = image.flippedHorizontally()
            boxes = flipBoxes(boxes, width: nw)
            ignore = flipBoxes(ignore, width: nw)
            masks = masks?.flippedHorizontally()
            polygons = polygons?.flippedHorizontally()
        }

        // Normalize, then Pad(size_divisor).
        let (pw, ph) = Pad.sizeToMultiple(width: nw, height: nh, divisor: sizeDivisor)
        let padded = Pad.image(normalize(image), width: pw, height: ph)
        meta.padShape = (ph, pw)
        return DetectionInput(image: padded, gtBboxes: boxes, gtLabels: sample.gtLabels, gtBboxesIgnore: ignore,
                              gtMasks: masks?.padded(width: pw, height: ph),
                              gtPolygons: polygons?.padded(width: pw, height: ph), meta: meta)
    }

    /// mmdet `Resize._resize_bboxes`: multiply by the scale factor, then clip x to [0, W] and y to [0, H].
    func scaleBoxes(_ boxes: [Float], _ ws: Float, _ hs: Float, width: Int, height: Int) -> [Float] {
        boxes.enumerated().map { i, v in
            let s = i % 2 == 0 ? v * ws : v * hs
            return clipBorder ? min(max(s, 0), Float(i % 2 == 0 ? width : height)) : s
        }
    }
}

/// mmdet `RandomFlip.bbox_flip`, horizontal: x1' = W − x2, x2' = W − x1 (flat [x1, y1, x2, y2] * N).
public func flipBoxes(_ boxes: [Float], width: Int) -> [Float] {
    var out = boxes
    let w = Float(width)
    for i in stride(from: 0, to: boxes.count, by: 4) {
        out[i] = w - boxes[i + 2]
        out[i + 2] = w - boxes[i]
    }
    return out
}
