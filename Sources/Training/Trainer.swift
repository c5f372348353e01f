import Data
import Engine
import Foundation
import NN

/// What the generic `Trainer` needs from a task (detection, segmentation, ...).
///
/// Exact resume relies on `losses(iteration:)` seeing a batch that is a pure function of (seed, iteration): the
/// trainer also reseeds the engine RNG from (seed, iteration) before each step.
public protocol TrainingTask: AnyObject {
    var model: Module { get }
    /// Batches per epoch, for epoch-based schedules and intervals.
    var itersPerEpoch: Int { get }
    /// Called once before the loop with the first iteration to run (0, or the resumed one): start prefetching there.
    func prepare(startIteration: Int) throws
    /// Forward pass on iteration `iteration`'s batch: named loss terms (the total is their sum).
    func losses(iteration: Int) throws -> [(String, Tensor)]
    /// Validation metrics as fractions, named by the task's evaluator; empty when there is nothing to evaluate.
    func evaluate(iteration: Int) throws -> [(String, Double)]
    /// The metrics `curves.png` shows (a task may return more, e.g. COCO's per-size APs).
    var plottedMetrics: [String] { get }
}

extension TrainingTask {
    /// Tasks without an evaluator plot nothing below the losses.
    public var plottedMetrics: [String] { [] }
}

/// Set by the SIGINT handler; the loop checks it between iterations.
nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

/// What one finished iteration reports to the hooks.
public struct IterationRecord {
    /// Iterations completed (the iteration just run is `done − 1`).
    public var done: Int
    public var lr: Double
    /// The task's loss terms and, last, "loss" (their sum).
    public var terms: [(String, Float)]
}

/// Something that runs around the training loop (mmcv's hooks): logging, checkpoints, evaluation. Hooks run in
/// the order the trainer holds them.
public protocol TrainerHook: AnyObject {
    func beforeRun(_ trainer: Trainer, start: Int) throws
    func afterIteration(_ trainer: Trainer, _ record: IterationRecord) throws
    func afterRun(_ trainer: Trainer, end: Int) throws
}

extension TrainerHook {
    public func beforeRun(_ trainer: Trainer, start: Int) throws {}
    public func afterRun(_ trainer: Trainer, end: Int) throws {}
}

/// The iteration loop shared by det-train and seg-train: LR schedule and warm-up, optimizer step, gradient clipping,
/// progress bar, interrupt checkpoint and NaN guard; logging, periodic checkpoints and evaluation are hooks.
///
/// Work dir layout: latest.safetensors (resume point), best.safetensors (best `saveBest` metric), log.jsonl,
/// curves.png.
public final class Trainer {
    public let settings: TrainerSettings
    public let task: TrainingTask
    public let workDir: String
    public let optimizer: Optimizer
    /// Run in order after every iteration; the defaults log, checkpoint and evaluate as the settings say.
    public var hooks: [TrainerHook]
    /// Total loss of every iteration run by this process, in order (for tests and summaries).
    public private(set) var lossHistory: [Float] = []
    /// Draw the progress bar on stderr.
    public var showProgress = true
    /// Stop after this many iterations (tests); nil runs to the end of the schedule.
    public var stopAfter: Int?
    /// The best value of `settings.saveBest` so far (kept in checkpoints).
    public var bestMetric: Double?
    /// The metrics of the last evaluation.
    public var lastMetrics: [(String, Double)] = []
    /// log.jsonl, open while `run` runs.
    public private(set) var log: JSONLinesLog!
    public private(set) var progress = ProgressBar(total: 0, enabled: false)
    /// Iterations of the whole schedule.
    public private(set) var maxIters = 0
    /// Where this run stops (`maxIters`, or earlier with `stopAfter`).
    public private(set) var endIteration = 0

    public var latestPath: String { "\(workDir)/latest.safetensors" }
    public var bestPath: String { "\(workDir)/best.safetensors" }
    public var logPath: String { "\(workDir)/log.jsonl" }
    public var plotPath: String { "\(workDir)/curves.png" }

    public init(settings: TrainerSettings, task: TrainingTask, workDir: String) throws {
        self.settings = settings
        self.task = task
        self.workDir = workDir
        optimizer = settings.makeOptimizer(task.model)
        hooks = [LoggerHook(), CheckpointHook(), EvalHook()]
        try createDirectory(workDir)
    }

    public struct Summary {
        public var iterations: Int
        public var seconds: Double
        public var lastMetrics: [(String, Double)]
        public var bestMetric: Double?
    }

    /// Writes a checkpoint of the current state (weights, optimizer, `iteration`, engine RNG, best metric).
    public func save(_ iteration: Int, to path: String) throws {
        try Checkpoint(iteration: iteration, rngState: EngineRandom.generator.state, bestMetric: bestMetric)
            .save(model: task.model, optimizer: optimizer, to: path)
    }

    /// An interval in iterations (intervals count epochs under EpochBasedRunner).
    public func every(_ interval: Int) -> Int { settings.iterations(interval, itersPerEpoch: task.itersPerEpoch) }

    /// Lets the hooks print a line without breaking the progress bar.
    public func pauseProgress() { progress.pause() }

    /// Runs to the end of the schedule (or `stopAfter`), resuming from latest.safetensors when `resume`.
    @discardableResult
    public func run(resume: Bool = false) throws -> Summary {
        maxIters = settings.maxIters(itersPerEpoch: task.itersPerEpoch)
        let schedule = settings.schedule(itersPerEpoch: task.itersPerEpoch)
        var start = 0
        if resume {
            guard FileManager.default.fileExists(atPath: latestPath) else {
                throw KitError.training("--resume: no checkpoint in \(workDir) (expected latest.safetensors)")
            }
            let ck = try Checkpoint.restore(from: latestPath, model: task.model, optimizer: optimizer)
            guard ck.iteration >= 0 && ck.iteration <= maxIters else {
                throw KitError.checkpoint("\(latestPath): iteration \(ck.iteration) is outside this schedule's 0...\(maxIters) "
                                          + "(runner.max_iters / max_epochs changed?)")
            }
            start = ck.iteration
            bestMetric = ck.bestMetric
            EngineRandom.generator = SplitMix64(seed: ck.rngState)
        }
        log = try JSONLinesLog(path: logPath, keepUpTo: resume ? start : 0)
        try task.prepare(startIteration: start)
        for h in hooks { try h.beforeRun(self, start: start) }

        interruptRequested = 0
        let previous = signal(SIGINT) { _ in interruptRequested = 1 }
        defer { signal(SIGINT, previous) }

        let end = min(maxIters, stopAfter.map { start + $0 } ?? maxIters)
        endIteration = end
        let t0 = Date()
        progress = ProgressBar(total: maxIters, start: start, enabled: showProgress)
        for it in start..<end {
            if interruptRequested != 0 {
                try save(it, to: latestPath)
                progress.finish()
                throw KitError.interrupted(iteration: it, checkpoint: latestPath)
            }
            EngineRandom.generator = SplitMix64(seed: settings.seed, stream: 3 << 32, index: UInt64(it))
            let lr = schedule.lr(at: it)
            optimizer.lr = Float(lr)
            task.model.train()
            optimizer.zeroGrad()
            let terms = try task.losses(iteration: it)
            var total = terms[0].1
            for t in terms.dropFirst() { total = total + t.1 }
            let values = terms.map { ($0.0, $0.1.item) } + [("loss", total.item)]
            guard total.item.isFinite else {
                try save(it, to: latestPath)   // weights are still those of the last good step
                progress.finish()
                throw KitError.training("loss is not finite at iteration \(it + 1) ("
                    + values.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + "); training stopped. The last good weights are in "
                    + "\(latestPath) (resume with --resume after lowering the lr or adding optimizer_config.grad_clip).")
            }
            total.backward()
            if let clip = settings.gradClip { clipGradNorm(optimizer.groups.flatMap { $0.params.map(\.1) }, maxNorm: clip) }
            optimizer.step()
            lossHistory.append(total.item)
            progress.update(it + 1, terms: values, lr: lr)
            let record = IterationRecord(done: it + 1, lr: lr, terms: values)
            for h in hooks { try h.afterIteration(self, record) }
        }
        for h in hooks { try h.afterRun(self, end: end) }
        progress.finish()
        try? writePlot()
        return Summary(iterations: end, seconds: Date().timeIntervalSince(t0), lastMetrics: lastMetrics, bestMetric: bestMetric)
    }

    /// curves.png: the loss terms (top) and the task's plotted metrics (bottom) against iterations.
    public func writePlot() throws {
        let entries = log.entries
        let colours: [RGB] = [(200, 30, 30), (30, 90, 200), (30, 160, 60), (220, 140, 0), (140, 40, 170), (0, 150, 160)]
        var lossKeys: [String] = []
        for e in entries where e["lr"] != nil {
            for (k, _) in e.objectValue ?? [] where k != "iter" && k != "lr" && !lossKeys.contains(k) { lossKeys.append(k) }
        }
        let metricKeys = task.plottedMetrics.filter { k in entries.contains { $0["lr"] == nil && $0[k] != nil } }
        func series(_ keys: [String], lossPanel: Bool) -> [LinePlot.Series] {
            keys.enumerated().map { i, k in
                LinePlot.Series(name: k, points: entries.compactMap { e in
                    guard (e["lr"] != nil) == lossPanel, let x = e["iter"]?.doubleValue, let y = e[k]?.doubleValue else { return nil }
                    return (x, y)
                }, colour: colours[i % colours.count])
            }
        }
        var panels = [LinePlot.Panel(title: "loss", series: series(lossKeys, lossPanel: true))]
        if !metricKeys.isEmpty { panels.append(LinePlot.Panel(title: "metric", series: series(metricKeys, lossPanel: false))) }
        try writePNG(LinePlot().render(panels), to: plotPath)
    }
}

/// log.jsonl and curves.png: the mean of each loss term over every `log_config.interval` iterations.
public final class LoggerHook: TrainerHook {
    var window: [String: Double] = [:], order: [String] = [], count = 0
    public init() {}

    public func afterIteration(_ t: Trainer, _ r: IterationRecord) throws {
        for (k, v) in r.terms {
            if window[k] == nil { order.append(k) }
            window[k, default: 0] += Double(v)
        }
        count += 1
        guard r.done % t.settings.logInterval == 0 || r.done == t.endIteration else { return }
        try t.log.append(.object([("iter", .int(r.done)), ("lr", .double(r.lr))]
                                 + order.map { ($0, JSON.double(window[$0]! / Double(count))) }))
        window = [:]; order = []; count = 0
        try? t.writePlot()
    }
}

/// latest.safetensors every `checkpoint_config.interval`, at the end of the schedule and where a run stops early.
public final class CheckpointHook: TrainerHook {
    public init() {}

    public func afterIteration(_ t: Trainer, _ r: IterationRecord) throws {
        if r.done % t.every(t.settings.checkpointInterval) == 0 || r.done == t.maxIters { try t.save(r.done, to: t.latestPath) }
    }

    public func afterRun(_ t: Trainer, end: Int) throws {
        if end % t.every(t.settings.checkpointInterval) != 0 && end != t.maxIters { try t.save(end, to: t.latestPath) }
    }
}

/// Evaluation every `evaluation.interval` and at the end of the schedule: metrics into log.jsonl and on stderr,
/// best.safetensors kept for `evaluation.save_best`.
public final class EvalHook: TrainerHook {
    public init() {}

    public func afterIteration(_ t: Trainer, _ r: IterationRecord) throws {
        guard r.done % t.every(t.settings.evalInterval) == 0 || r.done == t.maxIters else { return }
        t.pauseProgress()
        t.task.model.eval()
        let metrics = try withNoGrad { try t.task.evaluate(iteration: r.done) }
        t.task.model.train()
        guard !metrics.isEmpty else { return }
        t.lastMetrics = metrics
        try t.log.append(.object([("iter", .int(r.done))] + metrics.map { ($0.0, JSON.double($0.1)) }))
        if let key = t.settings.saveBest, let v = metrics.first(where: { $0.0 == key })?.1, v > (t.bestMetric ?? -.infinity) {
            t.bestMetric = v
            try t.save(r.done, to: t.latestPath)
            try t.save(r.done, to: t.bestPath)
        }
        writeStderr(("iter \(r.done): " + metrics.map { "\($0.0) \(String(format: "%.3f", $0.1))" }
            .joined(separator: ", ") + "\n"))
        try? t.writePlot()
    }
}

/// log.jsonl: one JSON object per line, flushed as written. On resume, lines past the resumed iteration are dropped
/// so the log reads as one uninterrupted run.
public final class JSONLinesLog {
    public let path: String
    public private(set) var entries: [JSON] = []

    public init(path: String, keepUpTo iteration: Int) throws {
        self.path = path
        if iteration > 0, let text = try? String(contentsOfFile: path, encoding: .utf8) {
            entries = text.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
                .filter { ($0["iter"]?.intValue ?? 0) <= iteration }
        }
        try rewrite()
    }

    public func append(_ entry: JSON) throws {
        entries.append(entry)
        guard let h = FileHandle(forWritingAtPath: path) else { throw KitError.io("\(path): cannot open the log for writing") }
        defer { try? h.close() }
        do {
            try h.seekToEnd()
            try h.write(contentsOf: Data((entry.serialized() + "\n").utf8))
        } catch { throw KitError.io("\(path): cannot write the log (\(describe(error)))") }
    }

    func rewrite() throws {
        try writeAtomically(entries.map { $0.serialized() + "\n" }.joined(), to: path)
    }
}

/// `[#####.....] 120/1500  loss 0.812 loss_cls 0.51 loss_bbox 0.30  lr 1.00e-02  3.2 it/s  ETA 07:12` on stderr:
/// redrawn in place on a terminal, one line every 10 s otherwise. Training and the evaluation tools share it.
public struct ProgressBar {
    let total: Int
    let enabled: Bool
    let tty: Bool
    let unit: String
    var startIter: Int
    var startTime = Date()
    var drawn = false
    var lastDraw = Date.distantPast

    public init(total: Int, start: Int = 0, enabled: Bool = true, unit: String = "it") {
        self.total = total; startIter = start; self.enabled = enabled; self.unit = unit
        tty = isatty(2) != 0
    }

    mutating func update(_ done: Int, terms: [(String, Float)], lr: Double) {
        let t = terms.map { "\($0.0) \(String(format: "%.4f", $0.1))" }.joined(separator: " ")
        update(done, status: "\(t)  lr \(String(format: "%.2e", lr))")
    }

    /// Shows `done` of `total` with `status` after the count.
    public mutating func update(_ done: Int, status: String = "") {
        guard enabled else { return }
        let now = Date()
        if !tty && now.timeIntervalSince(lastDraw) < 10 && done != total { return }
        if tty && now.timeIntervalSince(lastDraw) < 0.2 && done != total { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(startTime)
        let rate = Double(done - startIter) / max(elapsed, 1e-9)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 24, filled = total > 0 ? width * min(done, total) / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = "[\(bar)] \(done)/\(total)  \(status.isEmpty ? "" : status + "  ")\(String(format: "%.2f", rate)) \(unit)/s  ETA \(Self.clock(eta))"
        writeStderr(((tty ? "\r\u{1B}[K" : "") + line + (tty ? "" : "\n")))
        drawn = tty
    }

    public mutating func pause() { if drawn { writeStderr("\n"); drawn = false } }
    public mutating func finish() { pause() }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%02d:%02d", t / 60, t % 60)
    }
}
