import Foundation

/// mmseg's `CustomDataset` over an ADE20K-style folder pair: every image in `imageDir` (jpg/png) with a label PNG of
/// the same stem in `labelDir`, sorted by name, run through `pipeline`.
public struct SegmentationFolderDataset: SourceImageDataset {
    public let imageDir: String
    public let labelDir: String
    public let stems: [String]
    private let imageNames: [String]
    public var pipeline: SegmentationPipeline

    public var count: Int { stems.count }

    public init(imageDir: String, labelDir: String, pipeline: SegmentationPipeline) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: imageDir)
            .filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
        for name in names {
            let label = "\(labelDir)/\((name as NSString).deletingPathExtension).png"
            guard FileManager.default.fileExists(atPath: label) else {
                throw KitError.cannotRead(path: label, reason: "no label map for image \(imageDir)/\(name)")
            }
        }
        self.imageDir = imageDir
        self.labelDir = labelDir
        imageNames = names
        stems = names.map { ($0 as NSString).deletingPathExtension }
        self.pipeline = pipeline
    }

    public func sample(at index: Int) throws -> SegmentationSample {
        let imagePath = "\(imageDir)/\(imageNames[index])", labelPath = "\(labelDir)/\(stems[index]).png"
        let image = try readImage(imagePath), label = try readLabelMap(labelPath)
        guard image.width == label.width && image.height == label.height else {
            throw KitError.cannotDecode(path: labelPath, reason: "label is \(label.height)x\(label.width) (HxW) "
                + "but the image is \(image.height)x\(image.width)")
        }
        return SegmentationSample(filename: imagePath, image: image, label: label)
    }

    public func sourceImage(at index: Int) throws -> Image { try readImage("\(imageDir)/\(imageNames[index])") }

    public func item(at index: Int, rng: inout SplitMix64) throws -> SegmentationInput {
        try pipeline(sample(at: index), rng: &rng)
    }
}
