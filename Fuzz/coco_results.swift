// COCO results files against a fixed ground truth: loadRes from a file (bbox and segm results, RLE counts lists and
// strings, polygons), then COCOeval bbox and segm.
import Data
import Evaluation
import Foundation

let groundTruth: COCODataset = {
    let text = #"""
    {"images": [{"id": 10, "width": 4, "height": 5, "file_name": "a.jpg"}, {"id": 20, "width": 6, "height": 3, "file_name": "b.jpg"}],
     "categories": [{"id": 5, "name": "cat"}, {"id": 1, "name": "person"}],
     "annotations": [
      {"id": 7, "image_id": 10, "category_id": 5, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2, 2]]},
      {"id": 8, "image_id": 20, "category_id": 1, "bbox": [1, 0, 1, 3], "area": 3, "iscrowd": 1, "segmentation": {"counts": [3, 3, 12], "size": [3, 6]}},
      {"id": 3, "image_id": 10, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1, "segmentation": {"counts": "52=", "size": [5, 4]}},
      {"id": 4, "image_id": 10, "category_id": 5, "bbox": [0.5, 0.5, 1.5, 2], "area": 2.25, "segmentation": [[0, 0, 2, 0, 2, 2], [3, 3, 4, 3, 4, 4, 3, 4]]},
      {"id": 5, "image_id": 20, "category_id": 5, "bbox": [2, 1, 3, 2], "area": 6}]}
    """#
    let path = Scratch.write(Array(text.utf8), text.utf8.count, name: "gt.json")
    return try! COCODataset.load(path)
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCOCOResults(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let gt = groundTruth
    let path = Scratch.write(data, size, name: "results.json")
    do {
        let dt = try gt.loadRes(path)
        for type in [Params.IouType.bbox, .segm] {
            let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: type)
            E.evaluate()
            E.accumulate()
            _ = E.summarize()
            _ = E.perCategoryAP()
        }
    } catch {
        expectKitError(error, source: path)
    }
    return 0
}
