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

    @Option(help: "fp32; bf16: convolutions and matmuls on the CPU's bf16 units (AMX / AVX512-BF16), the rest fp32; int8: calibrated int8 convolutions (VNNI).")
    public var precision: Precision = .fp32

    @OptionGroup public var int8: Int8Options

    @Argument(help: "Images (JPEG or PNG) or folders of them.")
    public var paths: [String] = []

    public init() {}

    public func validate() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one image or folder") }
        try int8.check(precision: precision)
    }

    /// Before any work: selects `--precision` (refused on a CPU without bf16 / VNNI), registers the config, the checkpoint
    /// and the images (files and folders) as inputs no output may replace or land in, and checks `--out-dir` and
    /// every planned output file.
    public func protectInputs(planned outputs: [String]) throws {
        try MixedPrecision.select(precision)
        ProtectedInputs.add(config, option: "--config")
        ProtectedInputs.add(checkpoint, option: "--checkpoint")
        if let q = int8.quantized { ProtectedInputs.add(q, option: "--quantized") }
        for p in paths { ProtectedInputs.add(p, option: "input") }
        try ProtectedInputs.check(outDir, option: "--out-dir")
        for o in outputs { try ProtectedInputs.check(o, option: "--out-dir") }
    }
}

/// Users' images for the inference tools: files as given, folders expanded to their JPEG/PNG files in name order.
public struct ImageList {
    /// Paths as found, in order.
    public var files: [String] = []
    /// One line per path that is neither an image file nor a folder.
    public var problems: [String] = []
    /// Output stems, one per file and unique: the file's name without its extension; when several inputs share one,
    /// the first keeps it and each later one gets the first of NAME_1, NAME_2, ... that no input's own name and no
    /// earlier stem uses (a/x.jpg, a/x_1.jpg, b/x.jpg → x, x_1, x_2). Stable for the same inputs in the same order.
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
        stems = ImageList.uniqueStems(files.map { ((($0 as NSString).lastPathComponent) as NSString).deletingPathExtension })
    }

    /// Throws, naming every path's problem, when no path gave an image file: nothing is loaded or written then
    /// (a mistyped folder must not replace the outputs of an earlier run).
    public func requireImages() throws {
        guard files.isEmpty else { return }
        throw KitError.data(problems.isEmpty ? "no input images given" : problems.joined(separator: "; "))
    }

    /// `names` made unique as `stems` describes.
    public static func uniqueStems(_ names: [String]) -> [String] {
        let own = Set(names)
        var used: Set<String> = [], next: [String: Int] = [:]
        return names.map { name in
            var stem = name
            if used.contains(stem) {
                var n = next[name, default: 1]
                while own.contains("\(name)_\(n)") || used.contains("\(name)_\(n)") { n += 1 }
                next[name] = n + 1
                stem = "\(name)_\(n)"
            }
            used.insert(stem)
            return stem
        }
    }
}

/// The inputs a tool over many images could not use. Each is one line on stderr as it is found, and the run ends
/// with a count (exit status 1); a run over a single input reports its one problem once, as the error itself.
public struct InputProblems {
    public let tool: String
    public let total: Int
    public private(set) var lines: [String] = []

    /// `list`'s own problems (paths that are not images or folders) are the first ones.
    public init(tool: String, list: ImageList) {
        self.tool = tool
        total = list.files.count + list.problems.count
        for p in list.problems { add(p) }
    }

    public mutating func add(_ line: String, bar: inout ProgressBar) {
        bar.pause()
        add(line)
    }

    mutating func add(_ line: String) {
        lines.append(line)
        if total > 1 { writeStderr("\(tool): error: \(line)\n") }
    }

    /// Throws when any input could not be used.
    public func finish() throws {
        if lines.isEmpty { return }
        if total == 1 { throw KitError.data(lines[0]) }
        throw KitError.data("\(lines.count) of \(total) inputs could not be used (listed above)")
    }
}

extension Precision: ExpressibleByArgument {}
