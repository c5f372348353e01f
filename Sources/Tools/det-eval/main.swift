import ArgumentParser
import Data
import Evaluation
import Foundation

/// COCO bbox/segm mAP of a results file against an instances file, printed as pycocotools prints it.
struct DetEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "det-eval",
        abstract: "COCO detection / instance-segmentation mAP (pycocotools COCOeval semantics).")

    @Option(help: "Ground truth: a COCO instances JSON file.")
    var annotations: String

    @Option(help: "Detections: a COCO results JSON file (array of {image_id, category_id, score, bbox | segmentation}).")
    var results: String

    @Option(name: .customLong("iou-type"), help: "bbox or segm.")
    var iouType: String = "bbox"

    @Option(name: .customLong("json-out"), help: "Also write {iou_type, stats, per_category_ap} to this file.")
    var jsonOut: String?

    func validate() throws {
        guard Params.IouType(rawValue: iouType) != nil else {
            throw ValidationError("--iou-type must be bbox or segm, got '\(iouType)'")
        }
    }

    func run() throws {
        let type = Params.IouType(rawValue: iouType)!
        let gt: COCODataset, dt: COCODataset
        do {
            gt = try COCODataset.load(annotations)
            dt = try gt.loadRes(results)
        } catch let e as COCOError {
            fail("\(e)")
        }
        for w in dt.warnings { FileHandle.standardError.write(Data("warning: \(results): \(w)\n".utf8)) }
        let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: type)
        E.evaluate()
        E.accumulate()
        for line in E.summarize() { print(line) }

        let ap = E.perCategoryAP()
        print("")
        print("per-category AP (IoU=0.50:0.95, area=all, maxDets=\(E.params.maxDets.last ?? 100)):")
        let width = max(8, gt.categories.map(\.name.count).max() ?? 0)
        print("  \("id".padding(toLength: 5, withPad: " ", startingAt: 0)) \("category".padding(toLength: width, withPad: " ", startingAt: 0))  AP")
        for id in E.params.catIds {
            let name = gt.category(id: id)?.name ?? ""
            let v = ap[id] ?? .nan
            let idStr = String(id).padding(toLength: 5, withPad: " ", startingAt: 0)
            print("  \(idStr) \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(v.isNaN ? "nan" : String(format: "%.3f", v))")
        }

        if let out = jsonOut {
            var perCat: [String] = []
            for id in E.params.catIds {
                let v = ap[id] ?? .nan
                perCat.append("\"\(id)\": \(v.isNaN ? "null" : json(v))")
            }
            let text = "{\"iou_type\": \"\(iouType)\", \"stats\": [\(E.stats.map(json).joined(separator: ", "))], "
                + "\"per_category_ap\": {\(perCat.joined(separator: ", "))}}\n"
            do {
                try text.write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                fail("\(out): cannot write: \(error.localizedDescription)")
            }
        }
    }
}

/// Shortest round-trip decimal, as Python's json writes floats.
func json(_ v: Double) -> String { v.isFinite ? "\(v)" : "null" }

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("det-eval: error: \(message)\n".utf8))
    Foundation.exit(1)
}

DetEval.main()
