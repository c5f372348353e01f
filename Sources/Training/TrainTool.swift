import ArgumentParser
import Foundation

/// What det-train and seg-train share around the trainer: finding the default config, the work dir, the closing
/// summary line and the mapping of failures to one stderr line and an exit code.
public enum TrainTool {
    /// A tool's built-in config path, relative to the working directory when it is there, else found in the package
    /// checkout that holds the running binary (.build/<triple>/release/...).
    public static func locateDefault(_ defaultConfig: String) -> String {
        if FileManager.default.fileExists(atPath: defaultConfig) { return defaultConfig }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent(defaultConfig).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return defaultConfig
    }

    /// Creates the work dir (`--work-dir`, the config's `work_dir`, or work_dirs/<config name>) and writes the merged
    /// config into it.
    public static func prepareWorkDir(_ workDir: String?, configPath: String, config: Config) throws -> String {
        let name = URL(fileURLWithPath: configPath).deletingPathExtension().lastPathComponent
        let dir = try workDir ?? config.optionalString("work_dir") ?? "work_dirs/\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try config.serialized().write(toFile: "\(dir)/config.json", atomically: true, encoding: .utf8)
        return dir
    }

    /// "done: N iterations in T s; metric value, ..."
    public static func summaryLine(_ s: Trainer.Summary) -> String {
        String(format: "done: %d iterations in %.1f s", s.iterations, s.seconds)
            + (s.lastMetrics.isEmpty ? "" : "; " + s.lastMetrics.map { "\($0.0) \(String(format: "%.4f", $0.1))" }.joined(separator: ", "))
    }

    /// Runs `body`; a training failure exits 1 (130 when interrupted), a config error 2, each with one line on stderr.
    /// Returns the exit code to use, nil on success.
    public static func exitCode(tool: String, _ body: () throws -> Void) rethrows -> Int32? {
        do { try body() } catch let e as TrainingError {
            FileHandle.standardError.write(Data("\(tool): \(e)\n".utf8))
            if case .interrupted = e { return 130 }
            return 1
        } catch let e as ConfigError {
            FileHandle.standardError.write(Data("\(tool): \(e)\n".utf8))
            return 2
        }
        return nil
    }
}

/// The command-line options det-train and seg-train share (each tool supplies its own default config).
public struct TrainOptions: ParsableArguments {
    @Option(help: "Config file (JSON, with _base_ inheritance; default: the tool's built-in shapes config).")
    public var config: String?

    @Option(help: "Work directory (default: work_dirs/<config name>, or the config's work_dir).")
    public var workDir: String?

    @Flag(help: "Continue from <work-dir>/latest.safetensors (weights, optimizer, iteration, RNG).")
    public var resume = false

    @Option(help: "Initial weights (a checkpoint or a plain state dict, loaded non-strictly).")
    public var loadFrom: String?

    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set optimizer.lr=0.005 (value parsed as JSON, else a string).")
    public var overrides: [String] = []

    @Flag(help: "Check the config, print the merged result and exit.")
    public var dryRun = false

    public init() {}

    /// `--config`, or the tool's default found from the working directory or the package checkout.
    public func resolvedConfig(default defaultConfig: String) -> String {
        config ?? TrainTool.locateDefault(defaultConfig)
    }
}

/// The options det-eval and seg-eval share for their second form: a trained model run over its config's validation
/// split (`--config C --checkpoint W [--show-dir D] [--set k=v ...]`).
public struct ModelEvalOptions: ParsableArguments {
    @Option(help: "Training config (JSON, as det-train / seg-train take it).")
    public var config: String?

    @Option(help: "Trained weights: a training checkpoint or a plain state dict (safetensors) holding every model tensor.")
    public var checkpoint: String?

    @Option(name: .customLong("show-dir"), help: "With --config: write visualisations of the predictions here.")
    public var showDir: String?

    @Option(name: .customLong("set"), help: "With --config: override a config key, e.g. --set data.samples_per_gpu=1.")
    public var overrides: [String] = []

    public init() {}

    /// The (config, checkpoint) pair when the model form is chosen, nil for the files form. `filesForm` says whether
    /// any of the files form's options (named `filesOptions` in messages) were given.
    public func form(filesForm: Bool, filesOptions: String) throws -> (config: String, checkpoint: String)? {
        if config != nil || checkpoint != nil {
            guard let config, let checkpoint else { throw ValidationError("--config and --checkpoint go together") }
            guard !filesForm else { throw ValidationError("give either \(filesOptions) or --config/--checkpoint, not both") }
            return (config, checkpoint)
        }
        guard showDir == nil && overrides.isEmpty else { throw ValidationError("--show-dir and --set need --config") }
        return nil
    }
}
