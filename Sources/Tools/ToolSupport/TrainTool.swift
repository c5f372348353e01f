import ArgumentParser
import Config
import Data
import Distributed
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
        let dir = try workDir ?? config.optionalString("work_dir") ?? "work_dirs/\(name)"
        // Checked on every rank before any work, so that under mpirun rank 0 alone reports it (a usage error).
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), !isDir.boolValue {
            throw KitError.usage("work dir \(dir): is a file, not a folder; choose another --work-dir")
        }
        return dir
    }

    /// Creates the work dir, clears temporaries left by killed runs and writes the merged config into it.
    public static func prepareWorkDir(_ dir: String, config: Config) throws {
        try createDirectory(dir)
        removeStaleTemporaries(in: dir)
        try writeAtomically(config.serialized(), to: "\(dir)/config.json")
    }

    /// What det-train and seg-train do around their task: load and check the config (`--set`, `--dry-run`), build
    /// the model (`--load-from` weights), prepare the work dir, build the task and run the trainer (`--resume`).
    ///
    /// Under `mpirun -np N` (N ≥ 2) every rank does the same up to the trainer, which starts from rank 0's weights;
    /// rank 0 alone writes the work dir and prints, and the summary adds the allreduce time and each rank's memory.
    public static func train<C: TaskConfig, M>(tool: String, options: TrainOptions, defaultConfig: String, config: C.Type,
                                               buildModel: (Config) throws -> M,
                                               buildTask: (Config, M, _ workDir: String) throws -> TrainingTask) throws {
        let path = options.resolvedConfig(default: defaultConfig)
        // --amp is the config key amp, set last.
        let cfg = try C.load(path: path, overrides: options.overrides + (options.amp.map { ["amp=\"\($0.rawValue)\""] } ?? []))
        if let loadFrom = options.loadFrom, ProcessGroup.launchedRank == 0, !FileManager.default.fileExists(atPath: loadFrom) {
            throw KitError.usage("--load-from: file not found: \(loadFrom)")
        }
        if let loadFrom = options.loadFrom { ProtectedInputs.add(loadFrom, option: "--load-from") }   // no checkpoint may replace it
        try checkEnvironment()
        let settings = try TrainerSettings(config: cfg)
        try MixedPrecision.selectTraining(settings.amp, option: "\(cfg.source(of: "amp")): amp")
        EngineRandom.seed(settings.seed)
        let model = try buildModel(cfg)   // every model key is checked here, before any work
        if options.dryRun { print(cfg.serialized(), terminator: ""); return }
        // Checked before MPI starts: a bad work dir is a usage error every rank meets alike, reported by rank 0 alone.
        let dir = try workDir(options.workDir, configPath: path, config: cfg)
        let group = ProcessGroup.world   // MPI starts here under mpirun
        let isMain = group?.isMain ?? true
        // The data and the model's input sizes are checked here; in a job, rank 0 first (it may write the shapes
        // dataset), the others once it has succeeded.
        let task = try group?.onMain("preparing the data") { try buildTask(cfg, model, dir) } ?? buildTask(cfg, model, dir)
        if isMain { try prepareWorkDir(dir, config: cfg) }
        if let loadFrom = options.loadFrom, isMain {   // the other ranks take rank 0's weights
            let report = try Checkpoint.loadWeights(from: loadFrom, into: task.model)
            writeStderr("loaded \(report.loaded.count) tensors from \(loadFrom)\n")
            for line in report.problems(limit: 8) { writeStderr("  \(line)\n") }
        }
        let trainer = try Trainer(settings: settings, task: task, workDir: dir, group: group)
        if isMain {
            writeStderr(("\(tool): \(cfg.path), \(settings.maxIters(itersPerEpoch: task.itersPerEpoch)) iterations "
                + "(\(task.itersPerEpoch)/epoch), \(task.model.trainableParameters().reduce(0) { $0 + $1.1.count }) trainable parameters, "
                + "work dir \(dir)" + (group.map { ", \($0.size) processes × \(Threads.count) thread\(Threads.count == 1 ? "" : "s")" } ?? "")
                + "\n"))
        }
        // ACMIX_PROFILE_OPS=1: after the run, the wall time per op and backward node (as `bench --profile-ops`), to
        // see where a real schedule's steps go (the bench's random weights give few positive RoIs); `shapes`: per op
        // and input shapes.
        let profileSetting = ProcessInfo.processInfo.environment["ACMIX_PROFILE_OPS"]
        let profile = profileSetting == "1" || profileSetting == "shapes"
        if profile { OpProfile.enabled = true; OpProfile.byShape = profileSetting == "shapes"; OpProfile.reset() }
        let summary = try trainer.run(resume: options.resume)
        if profile {
            OpProfile.enabled = false
            for (op, e) in OpProfile.slowestFirst.prefix(OpProfile.byShape ? 60 : 25) {
                writeStderr(String(format: "%@: profile: %-45@ %9.1f ms %7d calls\n", tool, op, e.seconds * 1000, e.calls))
            }
        }
        var line = summaryLine(summary)
        if let group {
            // Each rank's peak resident memory, on rank 0.
            let peaks = try group.gather(bytes: Array(String(peakResidentMegabytes()).utf8), "gathering memory figures")
            line += String(format: "; gradient allreduce %.1f ms/iteration (%.1f MB per rank)",
                           1000 * summary.allreduceSeconds / Double(max(1, summary.allreduceCalls)), Double(summary.allreduceBytes) / 1e6)
                + "; peak RSS per rank " + peaks.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ", ") + " MB"
        }
        if isMain { print(line) }
        group?.finalize()
    }

    /// The thread, profiling and MPI settings from the environment, checked before any work.
    static func checkEnvironment() throws {
        if let text = ProcessInfo.processInfo.environment["ACMIX_NUM_THREADS"], Threads.configured == nil {
            throw KitError.usage("ACMIX_NUM_THREADS: '\(text)' is not a positive number of threads")
        }
        if let text = ProcessInfo.processInfo.environment["ACMIX_PROFILE_OPS"], !["", "0", "1", "shapes"].contains(text) {
            throw KitError.usage("ACMIX_PROFILE_OPS: '\(text)' is not 0, 1 or shapes")
        }
        _ = try ProcessGroup.configuredTimeout()
    }

    /// This process's peak resident set (VmHWM), in MB; 0 where /proc is missing.
    static func peakResidentMegabytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }

    /// "done: N iterations in T s; metric value, ..."
    public static func summaryLine(_ s: Trainer.Summary) -> String {
        String(format: "done: %d iterations in %.1f s", s.iterations, s.seconds)
            + (s.lastMetrics.isEmpty ? "" : "; " + s.lastMetrics.map { "\($0.0) \(String(format: "%.4f", $0.1))" }.joined(separator: ", "))
    }

    /// Runs `body`; any failure is one line on stderr and an exit code (`KitError.exitCode`: 2 for config and
    /// usage errors, 130 when interrupted, 1 otherwise). Returns the exit code to use, nil on success.
    ///
    /// Under mpirun, an error every rank meets alike (a config error, or a stop all ranks agreed on: Ctrl-C, a
    /// non-finite loss, a failed resume) is printed by rank 0 alone, and an agreed stop ends MPI cleanly; any other
    /// error names its rank, and the rank leaves at once (its peers notice and stop).
    public static func exitCode(tool: String, _ body: () throws -> Void) -> Int32? {
        let error: Error
        do { try body(); return nil } catch let e { error = e }
        let group = ProcessGroup.started
        let shared = group?.failureIsShared ?? false
        let code = (error as? KitError)?.exitCode ?? 1
        let alike = shared || code == 2, message = describe(error)
        if ProcessGroup.launchedRank == 0 || !alike {
            let rank = ProcessGroup.launchedSize > 1 && !alike && !message.hasPrefix("rank ") ? "rank \(ProcessGroup.launchedRank): " : ""
            writeStderr("\(tool): error: \(rank)\(message)\n")
        }
        if shared { group?.finalize() }
        return code
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

    @Option(help: "fp32 or bf16: mixed-precision training on the CPU's bf16 units (config key amp; fp32 master weights and optimizer state).")
    public var amp: Precision?

    @Flag(help: "Check the config, print the merged result and exit.")
    public var dryRun = false

    public init() {}

    public func validate() throws {
        if amp == .int8 { throw ValidationError("--amp takes fp32 or bf16; int8 is for inference (--precision int8 of the inference tools)") }
    }

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

    @Option(help: "With --config: fp32; bf16 (convolutions and matmuls on the CPU's bf16 units, the rest fp32); int8 (calibrated int8 convolutions, VNNI).")
    public var precision: Precision = .fp32

    @OptionGroup public var int8: Int8Options

    /// With int8: the model's calibrated convolutions (`--quantized`, or calibration through `forward`), installed for
    /// the rest of the run; at every precision the model's weights frozen (packed once, `FrozenWeights`).
    public func preparePrecision(_ module: Module, config: String, checkpoint: String, forward: @escaping (Image) throws -> Void) throws {
        if precision == .int8 {
            let run = QuantizableRun(module, checkpoint: checkpoint, forward: forward)
            try int8.prepare(run, precision: precision, config: config, overrides: overrides)
            Int8Inference.model = run.int8
        }
        // After calibration (whose float32 passes would pack every weight): int8 packs only what stays in floating point.
        FrozenWeights.install(module: module)
    }

    public init() {}

    /// The (config, checkpoint) pair when the model form is chosen, nil for the files form. `filesForm` says whether
    /// any of the files form's options (named `filesOptions` in messages) were given.
    public func form(filesForm: Bool, filesOptions: String) throws -> (config: String, checkpoint: String)? {
        try int8.check(precision: precision)
        if config != nil || checkpoint != nil {
            guard let config, let checkpoint else { throw ValidationError("--config and --checkpoint go together") }
            guard !filesForm else { throw ValidationError("give either \(filesOptions) or --config/--checkpoint, not both") }
            return (config, checkpoint)
        }
        guard showDir == nil && overrides.isEmpty else { throw ValidationError("--show-dir and --set need --config") }
        guard precision == .fp32 else { throw ValidationError("--precision needs --config (the files form runs no model)") }
        return nil
    }
}

extension ParsableCommand {
    /// `main()` for every tool: each failure is one "<tool>: error: ..." line on stderr. `KitError`s exit with their
    /// own status; argument errors (unknown or missing options, bad values, `validate()`) exit 2, as usage errors do,
    /// with ArgumentParser's message joined onto that one line (`--help` for the usage). `--help` prints the help.
    public static func mainReportingErrors() {
        let tool = configuration.commandName ?? "tool"
        do {
            var command = try parseAsRoot()
            try command.run()
            if ProcessGroup.started != nil { ProcessGroup.exitProcess(0) }
        } catch let error as KitError {
            writeStderr("\(tool): error: \(error)\n")
            ProcessGroup.exitProcess(error.exitCode)
        } catch let code as ExitCode {   // already reported (det-train / seg-train)
            ProcessGroup.exitProcess(code.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {   // --help, --version
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            writeStderr("\(tool): error: \(oneLine(message(for: error))) (see --help)\n")
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// Registers `inputs` as protected (`ProtectedInputs`) and refuses `output` when it is one of them or lies inside one
/// of the folders: `--output` equal to `--weights` would destroy the weights.
public func refuseOverwriting(_ output: (option: String, path: String?), inputs: [(option: String, path: String?)]) throws {
    for (option, path) in inputs { if let path { ProtectedInputs.add(path, option: option) } }
    if let out = output.path { try ProtectedInputs.check(out, option: output.option) }
}

/// A message of several lines as one: lines trimmed and joined with spaces, "Error: " prefixes and "Help:"/"Usage:"
/// lines dropped (the tool's name already starts the line; `--help` gives the usage).
public func oneLine(_ message: String) -> String {
    message.split(whereSeparator: \.isNewline)
        .map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty && !$0.hasPrefix("Help:") && !$0.hasPrefix("Usage:") && !$0.hasPrefix("See '") }
        .map { $0.hasPrefix("Error: ") ? String($0.dropFirst(7)) : $0 }
        .joined(separator: " ")
}

/// Registers every file or folder the config's `data` section names (dataset roots, annotation files, image folders)
/// as protected inputs, once the dataset is prepared (the shapes dataset is written on first use), then checks
/// `--show-dir` and the `subfolders` of it the tool writes into, before any work.
public func protectDataAndCheckShowDir(_ cfg: Config, showDir: String?, subfolders: [String]) throws {
    func walk(_ json: JSON?, _ key: String) {
        guard let json else { return }
        if let s = json.stringValue, !s.isEmpty { ProtectedInputs.add(s, option: key); return }
        for (k, v) in json.objectValue ?? [] where k != "dataset" && k != "type" { walk(v, "\(key).\(k)") }
        for v in json.arrayValue ?? [] { walk(v, key) }
    }
    walk(cfg["data"], "data")
    guard let showDir else { return }
    try ProtectedInputs.check(showDir, option: "--show-dir")
    for sub in subfolders { try ProtectedInputs.check("\(showDir)/\(sub)", option: "--show-dir") }
}
