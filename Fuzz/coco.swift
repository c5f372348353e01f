// COCO instances files: COCODataset.load from a file (simdjson shim, records, RLE strings, checks, indexes), then
// whatever loads is evaluated against itself (loadRes of its own annotations, COCOeval bbox and segm), so masks,
// boxes and sizes from the file reach MaskAPI and COCOeval.
import Data
import Evaluation
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCOCOInstances(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = Scratch.write(data, size, name: "instances.json")
    let gt: COCODataset
    do { gt = try COCODataset.load(path) } catch {
        expectKitError(error, source: path)
        return 0
    }
    for a in gt.annotations {
        let r = gt.annToRLE(a)
        check(r.pixelCount <= r.h * r.w, "annToRLE covers \(r.pixelCount) pixels of \(r.h) x \(r.w)")
        if case .rle = a.segmentation {
            check(MaskAPI.rleFrString(r.toString(), h: r.h, w: r.w) == r, "RLE string round trip")
        }
        _ = r.toBbox()
    }
    let results = gt.annotations.enumerated().map { i, a in
        COCOResult(imageId: a.imageId, categoryId: a.categoryId, score: Double(i % 7) / 7, bbox: a.bbox,
                   segmentation: a.segmentation)
    }
    do {
        let dt = try gt.loadRes(results)
        for type in [Params.IouType.bbox, .segm] {
            let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: type)
            E.evaluate()
            E.accumulate()
            _ = E.summarize()
        }
    } catch {
        expectKitError(error, source: path)
    }
    return 0
}
