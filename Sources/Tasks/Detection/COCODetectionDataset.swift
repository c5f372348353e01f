import Data
import Foundation

/// A COCO instances file and its image folder as a detection dataset (mmdet's CocoDataset): labels are the
/// categories in id order, crowd boxes become ignore regions, and training skips images without usable boxes
/// (filter_empty_gt) while validation keeps every image.
public struct COCODetectionDataset: SourceImageDataset {
    public let coco: COCODataset
    public let imagePrefix: String
    public let pipeline: DetectionPipeline
    /// Positions in `coco.images` of the images this split uses.
    public let positions: [Int]

    public init(coco: COCODataset, imagePrefix: String, pipeline: DetectionPipeline, skipEmpty: Bool) {
        self.coco = coco; self.imagePrefix = imagePrefix; self.pipeline = pipeline
        positions = coco.images.indices.filter { i in
            !skipEmpty || coco.annotationIndices(imageId: coco.images[i].id).contains { !coco.annotations[Int($0)].iscrowd }
        }
    }

    public var count: Int { positions.count }

    public func imageID(_ index: Int) -> Int { coco.images[positions[index]].id }

    public func sourceImage(at index: Int) throws -> Image {
        try readImage((imagePrefix as NSString).appendingPathComponent(coco.images[positions[index]].fileName))
    }

    public func item(at index: Int, rng: inout SplitMix64) throws -> DetectionInput {
        let info = coco.images[positions[index]]
        let path = (imagePrefix as NSString).appendingPathComponent(info.fileName)
        let image = try readImage(path)
        guard image.width == info.width && image.height == info.height else {
            throw KitError.data("\(path): image is \(image.width)x\(image.height), the annotations say \(info.width)x\(info.height)")
        }
        let indices = coco.annotationIndices(imageId: info.id)
        let annotations = indices.map { k -> InstanceAnnotation in
            let a = coco.annotations[Int(k)]
            return InstanceAnnotation(bbox: [a.bbox.x, a.bbox.y, a.bbox.w, a.bbox.h], label: coco.labelOfCategory[a.categoryId]!,
                                      isCrowd: a.iscrowd, area: a.area)
        }
        // LoadAnnotations(with_mask=True, poly2mask=True): polygons and RLEs decoded at the image's size.
        var masks: BitmapMasks? = nil
        if pipeline.withMask {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(indices.count * info.width * info.height)
            for k in indices { bytes += MaskAPI.rleDecodeRowMajor(COCODataset.annToRLE(coco.annotations[Int(k)], h: info.height, w: info.width)) }
            masks = BitmapMasks(count: indices.count, width: info.width, height: info.height, masks: bytes)
        }
        return pipeline(DetectionSample(filename: info.fileName, image: image, annotations: annotations, masks: masks), rng: &rng)
    }
}
