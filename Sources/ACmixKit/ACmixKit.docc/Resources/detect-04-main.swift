import ACmixKit
import Foundation

let args = CommandLine.arguments
do {
    let detector = try ObjectDetector(config: ModelConfig(args[1]), checkpoint: args[2])
    let names = try FileManager.default.contentsOfDirectory(atPath: args[3])
        .filter { ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
    for name in names {
        for d in try detector.predict(imageAt: "\(args[3])/\(name)", scoreThreshold: 0.3) {
            let b = d.box
            print(name, d.name, String(format: "%.4f %.1f %.1f %.1f %.1f", d.score, b.x1, b.y1, b.x2, b.y2))
        }
    }
} catch {
    fputs("detect-folder: \(error)\n", stderr)
    exit((error as? KitError)?.exitCode ?? 1)
}
