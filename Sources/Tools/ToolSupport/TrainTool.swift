import ArgumentParser
import Config
import Engine
import Foundation
import Tasks
import Training

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

    /// The work dir: `--work-dir`, the config's `work_dir`, or work_dirs/<config name>.
    public static func workDir(_ workDir: String?, configPath: String, config: Config) throws -> String {
        let name = URL(fileURLWithPath: configPath).deletingPathExtension().lastPathComponent
        return try workDir ?? config.optionalString("work_dir") ?? "work_dirs/\(name)"
    }

    /// Creates the work dir, clears temporaries left by killed runs and writes the merged config into it.
    public static func prepareWorkDir(_ dir: String, config: Config) throws {
        try createDirectory(dir)
        removeStaleTemporaries(in: dir)
        try writeAtomically(config.serialized(), to: "\(dir)/config.json")
    }

    /// What det-train and seg-train do around their task: load and check the config (`--set`, `--dry-run`), build
    /// the model (`--load-from` weights), prepare the work dir, build the task and run the trainer (`--resume`).
    public static func train<C: TaskConfig, M>(tool: String, options: TrainOptions, defaultConfig: String, config: C.Type,
                                               buildModel: (Config) throws -> M,
                                               buildTask: (Config, M, _ workDir: String) throws -> TrainingTask) throws {
        let path = options.resolvedConfig(default: defaultConfig)
        let cfg = try C.load(path: path, overrides: options.overrides)
        if let loadFrom = options.loadFrom, !FileManager.default.fileExists(atPath: loadFrom) {
            throw KitError.usage("--load-from: file not found: \(loadFrom)")
        }
        let settings = try TrainerSettings(config: cfg)
        EngineRandom.seed(settings.seed)
        let model = try buildModel(cfg)   // every model key is checked here, before any work
        if options.dryRun { print(cfg.serialized(), terminator: ""); return }
        let dir = try workDir(options.workDir, configPath: path, config: cfg)
        let task = try buildTask(cfg, model, dir)   // the data and the model's input sizes are checked here
        try prepareWorkDir(dir, config: cfg)
        if let loadFrom = options.loadFrom {
            let report = try Checkpoint.loadWeights(from: loadFrom, into: task.model)
            writeStderr("loaded \(report.loaded.count) tensors from \(loadFrom)\n")
            for line in report.problems(limit: 8) { writeStderr("  \(line)\n") }
        }
        let trainer = try Trainer(settings: settings, task: task, workDir: dir)
        writeStderr(("\(tool): \(cfg.path), \(settings.maxIters(itersPerEpoch: task.itersPerEpoch)) iterations "
            + "(\(task.itersPerEpoch)/epoch), \(task.model.trainableParameters().reduce(0) { $0 + $1.1.count }) trainable parameters, "
            + "work dir \(dir)\n"))
        print(summaryLine(try trainer.run(resume: options.resume)))
    }

    /// "done: N iterations in T s; metric value, ..."
    public static func summaryLine(_ s: Trainer.Summary) -> String {
        String(format: "done: %d iterations in %.1f s", s.iterations, s.seconds)
            + (s.lastMetrics.isEmpty ? "" : "; " + s.lastMetrics.map { "\($0.0) \(String(format: "%.4f", $0.1))" }.joined(separator: ", "))
    }

    /// Runs `body`; any failure is one line on stderr and an exit code (`KitError.exitCode`: 2 for config and
    /// usage errors, 130 when interrupted, 1 otherwise). Returns the exit code to use, nil on success.
    public static func exitCode(tool: String, _ body: () throws -> Void) -> Int32? {
        do { try body() } catch let e as KitError {
            writeStderr("\(tool): error: \(e)\n")
            return e.exitCode
        } catch {
            writeStderr("\(tool): error: \(describe(error))\n")
            return 1
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

extension ParsableCommand {
    /// `main()` for tools whose failures are `KitError`s: one "<tool>: error: ..." line on stderr and the error's
    /// exit code; argument errors keep ArgumentParser's usage message.
    public static func mainReportingErrors() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as KitError {
            writeStderr("\(configuration.commandName ?? "tool"): error: \(error)\n")
            Foundation.exit(error.exitCode)
        } catch {
            exit(withError: error)
        }
    }
}

/// Refuses an output path that names one of the inputs (after resolving `.`/`..` and symbolic links), so a tool
/// never overwrites what it reads: `--output` equal to `--weights` would destroy the weights.
public func refuseOverwriting(_ output: (option: String, path: String?), inputs: [(option: String, path: String?)]) throws {
    guard let out = output.path else { return }
    func resolved(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }
    for (option, path) in inputs {
        if let path, resolved(path) == resolved(out) {
            throw KitError.usage("\(output.option) \(out) is the \(option) file; choose another output path")
        }
    }
}
