/// The shapes dataset generated on the fly (no files), as detection or segmentation samples through a pipeline:
/// item `i` is `generator.example(split:index: i)` fed to the pipeline with the loader's per-sample generator.
public struct ShapesDetectionDataset: SourceImageDataset {
    public var generator: ShapesGenerator
    public var split: Int
    public var count: Int
    public var pipeline: DetectionPipeline

    public init(generator: ShapesGenerator, split: Int = 0, count: Int, pipeline: DetectionPipeline) {
        self.generator = generator
        self.split = split
        self.count = count
        self.pipeline = pipeline
    }

    public func item(at index: Int, rng: inout SplitMix64) -> DetectionInput {
        let name = ShapesDatasetWriter.stem(split: split, index: index)
        return pipeline(generator.example(split: split, index: index).detectionSample(filename: name), rng: &rng)
    }

    public func sourceImage(at index: Int) -> Image { generator.example(split: split, index: index).image }
}

public struct ShapesSegmentationDataset: SourceImageDataset {
    public var generator: ShapesGenerator
    public var split: Int
    public var count: Int
    /// Set `reduceZeroLabel = false`: background (0) is a real class in this dataset.
    public var pipeline: SegmentationPipeline

    public init(generator: ShapesGenerator, split: Int = 0, count: Int, pipeline: SegmentationPipeline) {
        self.generator = generator
        self.split = split
        self.count = count
        self.pipeline = pipeline
    }

    public func item(at index: Int, rng: inout SplitMix64) -> SegmentationInput {
        let name = ShapesDatasetWriter.stem(split: split, index: index)
        return pipeline(generator.example(split: split, index: index).segmentationSample(filename: name), rng: &rng)
    }

    public func sourceImage(at index: Int) -> Image { generator.example(split: split, index: index).image }
}
