// detect-folder CONFIG CHECKPOINT FOLDER [SCORE_THR]: one line per detection in each PNG/JPEG of FOLDER.
// CONFIG is a config file or a built-in name such as retinanet-shapes.
import ACmixKit
import Foundation

let args = CommandLine.arguments
guard args.count == 4 || args.count == 5, let threshold = Float(args.count == 5 ? args[4] : "0.3") else {
    fputs("usage: detect-folder CONFIG CHECKPOINT FOLDER [SCORE_THR]\n", stderr)
    exit(2)
}
do {
    let detector = try ObjectDetector(config: ModelConfig(args[1]), checkpoint: args[2])
    let names = try FileManager.default.contentsOfDirectory(atPath: args[3])
        .filter { ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
    for name in names {
        for d in try detector.predict(imageAt: "\(args[3])/\(name)", scoreThreshold: threshold) {
            let b = d.box
            print(name, d.name, String(format: "%.4f %.1f %.1f %.1f %.1f", d.score, b.x1, b.y1, b.x2, b.y2))
        }
    }
} catch {
    fputs("detect-folder: \(error)\n", stderr)
    exit((error as? KitError)?.exitCode ?? 1)
}
