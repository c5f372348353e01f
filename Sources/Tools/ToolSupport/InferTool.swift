import ArgumentParser
import Config
import Data
import Engine
import Foundation
import Tasks
import Training

/// The options det-infer and seg-infer share: the trained model and where the outputs go.
public struct InferOptions: ParsableArguments {
    @Option(help: "Config (JSON, as det-train / seg-train take it): the model and the test pipeline.")
    public var config: String

    @Option(help: "Trained weights: a training checkpoint or a state dict (e.g. from scripts/convert_pth.py).")
    public var checkpoint: String

    @Option(name: .customLong("out-dir"), help: "Output folder.")
    public var outDir = "outputs"

    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set model.test_cfg.score_thr=0.1.")
    public var overrides: [String] = []

    @Argument(help: "Images (JPEG or PNG) or folders of them.")
    public var paths: [String] = []

    public init() {}

    public func validate() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one image or folder") }
    }
}

/// Users' images for the inference tools: files as given, folders expanded to their JPEG/PNG files in name order.
public struct ImageList {
    /// Paths as found, in order.
    public var files: [String] = []
    /// One line per path that is neither an image file nor a folder.
    public var problems: [String] = []
    /// Output stems, unique across `files` ("a", "a_1", ... when two folders hold the same name).
    public var stems: [String] = []

    public init(_ paths: [String]) {
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else { problems.append("\(p): no such file or folder"); continue }
            if isDir.boolValue {
                guard let names = try? fm.contentsOfDirectory(atPath: p) else { problems.append("\(p): cannot list the folder"); continue }
                let images = names.filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
                if images.isEmpty { problems.append("\(p): no JPEG or PNG files in the folder") }
                files += images.map { (p as NSString).appendingPathComponent($0) }
            } else {
                files.append(p)
            }
        }
        var seen: [String: Int] = [:]
        stems = files.map { f in
            let stem = ((f as NSString).lastPathComponent as NSString).deletingPathExtension
            defer { seen[stem, default: 0] += 1 }
            return seen[stem].map { "\(stem)_\($0)" } ?? stem
        }
    }
}
