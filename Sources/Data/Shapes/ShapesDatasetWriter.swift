import Engine
import Foundation

/// Writes the synthetic shapes dataset in both mmdet (COCO) and mmseg (ADE20K) layouts, sharing the images:
///
///     OUT/images/{training,validation}/{train,val}_NNNNNN.jpg     RGB images
///     OUT/annotations/{training,validation}/{train,val}_NNNNNN.png 8-bit labels, 0 = background, 1..4 = classes
///     OUT/annotations/instances_{train,val}.json                  COCO instances, polygons, category ids 1..4
///     OUT/classes.txt                                              background, circle, rectangle, triangle, ellipse
///
/// COCO `file_name`s are relative to `OUT/images/training` (train) or `OUT/images/validation` (val). For mmseg use
/// `num_classes=5, reduce_zero_label=False` (background is a real class here). Same seed → byte-identical files.
public struct ShapesDatasetWriter: Sendable {
    public var generator: ShapesGenerator
    public var trainCount: Int
    public var valCount: Int
    /// "jpg" (small, like ADE20K) or "png" (lossless).
    public var imageFormat: String
    public var jpegQuality = 92

    public init(generator: ShapesGenerator, trainCount: Int = 300, valCount: Int = 60, imageFormat: String = "jpg") {
        precondition(imageFormat == "jpg" || imageFormat == "png", "image format must be jpg or png")
        self.generator = generator
        self.trainCount = trainCount
        self.valCount = valCount
        self.imageFormat = imageFormat
    }

    /// Counts of what was written, for the tool to report.
    public struct Summary: Sendable {
        public var images = 0
        public var instances = 0
        public var bytes = 0
    }

    public static let splits = [(name: "train", folder: "training"), (name: "val", folder: "validation")]

    /// File stem of example `index` of `split` ("val_000007"), shared by the written files and the in-memory datasets.
    public static func stem(split: Int, index: Int) -> String { String(format: "%@_%06d", splits[split].name, index) }

    @discardableResult
    public func write(to root: String) throws -> Summary {
        var summary = Summary()
        for (split, (name, folder)) in ShapesDatasetWriter.splits.enumerated() {
            let imageDir = "\(root)/images/\(folder)", labelDir = "\(root)/annotations/\(folder)"
            for dir in [imageDir, labelDir] { try createDirectory(dir) }
            let count = split == 0 ? trainCount : valCount
            var entries = InstancesJSON(firstID: summary.instances + 1)   // annotation ids run on across splits
            for index in 0..<count {
                let example = generator.example(split: split, index: index)
                let stem = ShapesDatasetWriter.stem(split: split, index: index)
                let fileName = "\(stem).\(imageFormat)"
                let imageBytes = imageFormat == "jpg"
                    ? try encodeJPEG(example.image, quality: jpegQuality, name: "\(imageDir)/\(fileName)")
                    : try encodePNG(example.image, name: "\(imageDir)/\(fileName)")
                try writeBytes(imageBytes, to: "\(imageDir)/\(fileName)")
                let labelBytes = try encodePNG(example.label, compressionLevel: 9, name: "\(labelDir)/\(stem).png")
                try writeBytes(labelBytes, to: "\(labelDir)/\(stem).png")
                summary.bytes += imageBytes.count + labelBytes.count
                entries.add(example, index: index, fileName: fileName, size: generator.size)
                summary.images += 1
            }
            summary.instances += entries.instances
            let json = entries.text(seed: generator.seed)
            let jsonBytes = Array(json.utf8)
            try writeBytes(jsonBytes, to: "\(root)/annotations/instances_\(name).json")
            summary.bytes += jsonBytes.count
        }
        let classes = (["background"] + ShapeKind.allCases.map(\.name)).joined(separator: "\n") + "\n"
        try writeBytes(Array(classes.utf8), to: "\(root)/classes.txt")
        return summary
    }
}

extension ShapesDatasetWriter {
    /// The `instances_<split>.json` text `write` produces for `split`, without writing anything.
    public func instancesJSON(split: Int) -> String {
        var entries = InstancesJSON()
        for index in 0..<(split == 0 ? trainCount : valCount) {
            let fileName = "\(ShapesDatasetWriter.stem(split: split, index: index)).\(imageFormat)"
            entries.add(generator.example(split: split, index: index), index: index, fileName: fileName, size: generator.size)
        }
        return entries.text(seed: generator.seed)
    }

    /// Whether `root` holds this writer's validation split (the same images and annotations; annotation ids, which
    /// depend on the train split's size, aside): a folder written with another seed, size or count must not be
    /// scored against.
    public func matchesValidationSplit(at root: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "\(root)/annotations/instances_val.json"),
              let text = String(data: data, encoding: .utf8) else { return false }
        // Instance ids and the images' file format (make-shapes --format png) do not change the ground truth.
        func withoutIDs(_ t: String) -> String {
            t.replacingOccurrences(of: #"\{"id": [0-9]+, "image_id""#, with: #"{"image_id""#, options: .regularExpression)
                .replacingOccurrences(of: #"\.(jpg|png)""#, with: #".image""#, options: .regularExpression)
        }
        return withoutIDs(text) == withoutIDs(instancesJSON(split: 1))
    }
}

/// A split's COCO instances file, built one example at a time (ids: image index + 1; instances numbered from 1).
struct InstancesJSON {
    var images: [String] = [], annotations: [String] = []
    var firstID = 1
    var instances: Int { annotations.count }

    mutating func add(_ example: ShapesExample, index: Int, fileName: String, size: Int) {
        let imageID = index + 1
        images.append("{\"id\": \(imageID), \"file_name\": \"\(fileName)\", \"width\": \(size), \"height\": \(size)}")
        for (g, a) in zip(example.shapes, example.annotations) {
            annotations.append("{\"id\": \(firstID + annotations.count), \"image_id\": \(imageID), "
                + "\"category_id\": \(g.kind.rawValue), \"iscrowd\": 0, \"area\": \(fixed(a.area)), "
                + "\"bbox\": [\(a.bbox.map(fixed).joined(separator: ", "))], "
                + "\"segmentation\": [[\(a.polygons[0].map(fixed).joined(separator: ", "))]]}")
        }
    }

    func text(seed: UInt64) -> String {
        let categories = ShapeKind.allCases.map { "{\"id\": \($0.rawValue), \"name\": \"\($0.name)\", \"supercategory\": \"shape\"}" }
        return "{\"info\": {\"description\": \"ACmixKit synthetic shapes, seed \(seed)\"},\n"
            + "\"images\": [\n" + images.joined(separator: ",\n") + "\n],\n"
            + "\"annotations\": [\n" + annotations.joined(separator: ",\n") + "\n],\n"
            + "\"categories\": [" + categories.joined(separator: ", ") + "]}\n"
    }
}

/// Two decimals, never "-0.00": stable text for byte-identical files.
private func fixed(_ x: Double) -> String {
    let s = String(format: "%.2f", x)
    return s == "-0.00" ? "0.00" : s
}
