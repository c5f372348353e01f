/// An image and its semantic label map as loaded (mmseg `LoadImageFromFile` + `LoadAnnotations`).
public struct SegmentationSample: Sendable {
    public var filename: String
    public var image: Image
    /// Raw label map as stored (before reduce_zero_label).
    public var label: LabelMap

    public init(filename: String, image: Image, label: LabelMap) {
        precondition(image.width == label.width && image.height == label.height, "\(filename): image and label sizes differ")
        self.filename = filename
        self.image = image
        self.label = label
    }
}

/// The network-ready form of one segmentation sample.
public struct SegmentationInput: Sendable {
    /// Normalised CHW image; in training padded to `cropSize`.
    public var image: FloatImage
    /// Class ids with 255 = ignore, the same height/width as `image` in training. In test mode the label stays at the
    /// original resolution (mmseg evaluates at the original size).
    public var label: LabelMap
    public var meta: ImageMeta

    public init(image: FloatImage, label: LabelMap, meta: ImageMeta) {
        self.image = image
        self.label = label
        self.meta = meta
    }
}

/// mmseg's ADE20K-style pipeline:
/// train: `LoadAnnotations(reduce_zero_label) → Resize(img_scale, ratio_range=(0.5, 2.0)) →
/// RandomCrop(crop_size, cat_max_ratio=0.75) → RandomFlip(0.5) → PhotoMetricDistortion → Normalize →
/// Pad(crop_size, pad_val=0, seg_pad_val=255)`;
/// test: `Resize(img_scale, keep_ratio) → Normalize`.
public struct SegmentationPipeline: Sendable {
    /// (long, short) edge limits of the keep-ratio resize, before the random ratio.
    public var imgScale: (Int, Int) = (2048, 512)
    public var ratioRange: (Double, Double)? = (0.5, 2.0)
    public var cropSize: (height: Int, width: Int) = (512, 512)
    public var catMaxRatio = 0.75
    public var flipProb = 0.5
    public var photometric = true
    public var reduceZeroLabel = true
    public var normalize = Normalize()
    public var training = true

    public init(imgScale: (Int, Int) = (2048, 512), ratioRange: (Double, Double)? = (0.5, 2.0),
                cropSize: (height: Int, width: Int) = (512, 512), catMaxRatio: Double = 0.75, flipProb: Double = 0.5,
                photometric: Bool = true, reduceZeroLabel: Bool = true, training: Bool = true) {
        self.imgScale = imgScale
        self.ratioRange = ratioRange
        self.cropSize = cropSize
        self.catMaxRatio = catMaxRatio
        self.flipProb = flipProb
        self.photometric = photometric
        self.reduceZeroLabel = reduceZeroLabel
        self.training = training
    }

    /// The (height, width) of the test-mode network input an image of this size becomes.
    public func inputSize(width w: Int, height h: Int) -> (height: Int, width: Int) {
        let s = rescaleSize(width: w, height: h, scale: imgScale)
        return (s.height, s.width)
    }

    public func callAsFunction(_ sample: SegmentationSample, rng: inout SplitMix64) -> SegmentationInput {
        var meta = ImageMeta(filename: sample.filename, oriShape: (sample.image.height, sample.image.width))
        var label = reduceZeroLabel ? sample.label.reducingZeroLabel() : sample.label

        // Resize: mmseg `random_sample_ratio` scales img_scale by U(ratio_range), then keep-ratio rescale.
        var scale = imgScale
        if training, let (lo, hi) = ratioRange {
            let ratio = rng.uniform(lo, hi)
            scale = (Int(Double(imgScale.0) * ratio), Int(Double(imgScale.1) * ratio))
        }
        let size = rescaleSize(width: sample.image.width, height: sample.image.height, scale: scale)
        var image = sample.image.resized(width: size.width, height: size.height)
        let ws = Float(size.width) / Float(sample.image.width), hs = Float(size.height) / Float(sample.image.height)
        meta.scaleFactor = [ws, hs, ws, hs]
        guard training else {
            meta.imgShape = (image.height, image.width)
            meta.padShape = meta.imgShape
            return SegmentationInput(image: normalize(image), label: label, meta: meta)
        }
        label = label.resized(width: size.width, height: size.height)

        (image, label) = RandomCrop(cropSize: cropSize, catMaxRatio: catMaxRatio)(image, label, rng: &rng)
        meta.imgShape = (image.height, image.width)

        if flipProb > 0 && rng.bernoulli(flipProb) {
            meta.flip = true
            meta.flipDirection = "horizontal"
            image = image.flippedHorizontally()
            label = label.flippedHorizontally()
        }
        if photometric { image = PhotoMetricDistortion()(image, rng: &rng) }

        let (pw, ph) = (max(cropSize.width, image.width), max(cropSize.height, image.height))
        meta.padShape = (ph, pw)
        return SegmentationInput(image: Pad.image(normalize(image), width: pw, height: ph),
                                 label: Pad.labels(label, width: pw, height: ph), meta: meta)
    }
}
