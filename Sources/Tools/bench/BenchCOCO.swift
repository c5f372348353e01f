import Data
import Evaluation
import Foundation

/// COCO data-path cases: loading a train2017-sized instances file and a val2017-sized bbox evaluation.
/// Inputs are generated once into $ACMIXKIT_BENCH_DIR (default /tmp/acmixkit-bench): by the reference
/// generator (shared/reference/coco-eval/gen_coco_eval.py) when its Python packages are installed,
/// else by `COCOBenchData`, a Swift generator of the same shape.
let cocoCases: [BenchCase] = [
    BenchCase(name: "coco_load_220mb") {
        let path = try COCOBenchData.trainInstances()
        let mb = Double((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) / 1e6
        var counts = (0, 0)
        return ({
            let coco = try COCODataset.load(path)
            counts = (coco.images.count, coco.annotations.count)
        }, { t in
            // pycocotools COCO(path) took 7.07 s (min) on the README's machine.
            ["file_mb": mb, "mb_per_s": mb / t, "images": Double(counts.0), "annotations": Double(counts.1),
             "speedup_vs_readme_pycocotools": 7.07 / t]
        })
    },
    BenchCase(name: "coco_eval_bbox_5000") {
        let (gtPath, dtPath) = try COCOBenchData.valBboxWorkload()
        let gt = try COCODataset.load(gtPath)
        var ap = 0.0
        return ({
            // As the README's total_eval: loadRes from the file + evaluate + accumulate + summarize.
            let dt = try gt.loadRes(dtPath)
            let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: .bbox)
            E.evaluate()
            E.accumulate()
            E.summarize()
            ap = E.stats[0]
        }, { t in
            // README minima on its machine: pycocotools 35.30 s, faster_coco_eval 5.98 s.
            ["AP": ap, "speedup_vs_readme_pycocotools": 35.30 / t, "speedup_vs_readme_faster_coco_eval": 5.98 / t]
        })
    },
]

/// Finds or makes the benchmark inputs.
enum COCOBenchData {
    static var dir: String {
        ProcessInfo.processInfo.environment["ACMIXKIT_BENCH_DIR"] ?? "/tmp/acmixkit-bench"
    }

    /// shared/reference/coco-eval beside the package root (the bench runs from the package root).
    static var referenceDir: String {
        packageRoot.appendingPathComponent("../shared/reference/coco-eval").standardizedFileURL.path
    }

    static func trainInstances() throws -> String {
        let path = dir + "/bench_instances_train.json"
        if FileManager.default.fileExists(atPath: path) { return path }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if !python("g.gen_bench_load(os.path.join(w, 'bench_instances_train.json'), 118287, 120000, 850000)") {
            try COCOSyntheticWriter.trainInstances(path: path, images: 120_000, annotations: 850_000, seed: 118_287)
        }
        return path
    }

    static func valBboxWorkload() throws -> (String, String) {
        let gt = dir + "/bench_instances_val.json", dt = dir + "/bench_detections_bbox.json"
        if FileManager.default.fileExists(atPath: gt) && FileManager.default.fileExists(atPath: dt) { return (gt, dt) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if !python("g.gen_bench_eval(w, 2017, 5000, 7.3, 100)") {
            try COCOSyntheticWriter.valBboxWorkload(gtPath: gt, dtPath: dt, images: 5000, gtPerImage: 7.3,
                                                    detsPerImage: 100, seed: 2017)
        }
        return (gt, dt)
    }

    /// Runs one generator call of gen_coco_eval.py; false when Python or its packages are missing.
    static func python(_ call: String) -> Bool {
        let script = "import sys, os\nsys.path.insert(0, \(quoted(referenceDir)))\nimport gen_coco_eval as g\n"
            + "w = \(quoted(dir))\n\(call)\n"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    static func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "\\'") + "'" }
}
