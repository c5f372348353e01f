import Foundation

/// `../shared/reference/coco-eval` relative to the package root, found from this file's path.
enum COCOReference {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let cocoEval = packageRoot.appendingPathComponent("../shared/reference/coco-eval").standardizedFileURL
    static func path(_ name: String) -> String { cocoEval.appendingPathComponent(name).path }
}
