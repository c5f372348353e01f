import ArgumentParser
import Backbones
import Engine
import Foundation
import NN
import Tasks
import ToolSupport

/// Parameters and FLOPs of a config's model or a backbone (mmdetection's tools/analysis_tools/get_flops.py).
struct GetFlops: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get-flops",
        abstract: "Parameters and FLOPs of a detector, segmentor or backbone, per top-level module and per operator.",
        discussion: """
            Counts as mmdetection's get_flops does (mmengine, fvcore's convention): one
            multiply-add is one FLOP; convolutions, linear layers and matmuls count
            their multiply-adds, BatchNorm 2 per element, LayerNorm / GroupNorm 5,
            adaptive average pooling 1;
            ACmix's attention and shift paths count what the authors' unfolded
            code computes (fvcore misses their local attention). Elementwise ops,
            activations, pooling and post-processing count nothing. Random
            weights and a random input: a two-stage detector's RoI heads run on
            the proposals its RPN gives them.
              get-flops --config C [--shape H W] [--set k=v]
              get-flops --arch A [--shape H W] [--mode classification|dense]
            """)

    @Option(help: "Detection or segmentation config (JSON).")
    var config: String?

    @Option(help: "A backbone instead: \(BackboneRegistry.allArchs.joined(separator: ", ")).")
    var arch: String?

    @Option(help: "With --arch: classification (the authors' classifier with its 1000-class head) or dense (features only).")
    var mode: String = "classification"

    @Option(parsing: .upToNextOption, help: "Input height and width (default: 1280 800 for a config, as mmdet's; 224 224 for --arch).")
    var shape: [Int] = []

    @Option(name: .customLong("set"), help: "Override a config key.")
    var overrides: [String] = []

    @Option(name: .customLong("json-out"), help: "Also write the figures as JSON to this file.")
    var jsonOut: String?

    func validate() throws {
        guard (config == nil) != (arch == nil) else { throw ValidationError("give exactly one of --config and --arch") }
        guard shape.isEmpty || (shape.count == 2 && shape.allSatisfy { (32...16384).contains($0) }) else {
            throw ValidationError("--shape takes two sizes (height width) in 32...16384")
        }
        guard ["classification", "dense"].contains(mode) else { throw ValidationError("--mode must be classification or dense") }
        if arch != nil && !overrides.isEmpty { throw ValidationError("--set needs --config") }
    }

    func run() throws {
        if let jsonOut { try refuseOverwriting(("--json-out", jsonOut), inputs: [("--config", config)]) }
        let report: Complexity
        if let config {
            let (h, w) = shape.isEmpty ? (1280, 800) : (shape[0], shape[1])
            report = try Complexity.measure(config: config, overrides: overrides, height: h, width: w)
        } else {
            let (h, w) = shape.isEmpty ? (224, 224) : (shape[0], shape[1])
            report = try Complexity.measure(arch: arch!, dense: mode == "dense", height: h, width: w)
        }
        print(report.table)
        if let jsonOut { try writeAtomically(report.json.serialized() + "\n", to: jsonOut) }
    }
}

GetFlops.mainReportingErrors()
