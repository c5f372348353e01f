import Data
import Distributed
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
    /// Data-parallel training (mpirun), called once before `prepare`: from then on `losses` takes this rank's part of
    /// each iteration's batch (`itersPerEpoch` counts the job's batches) and `evaluate` this rank's part of the
    /// validation set, returning the metrics on rank 0 and nothing on the others.
    func distribute(over group: ProcessGroup) throws
}

extension TrainingTask {
    /// Tasks without an evaluator plot nothing below the losses.
    public var plottedMetrics: [String] { [] }

    public func distribute(over group: ProcessGroup) throws {
        throw KitError.usage("\(type(of: self)) cannot train data-parallel: run it without mpirun")
    }
}

/// What one finished iteration reports to the hooks.
public struct IterationRecord {
    /// Iterations completed (the iteration just run is `done − 1`).
    public var done: Int
    public var lr: Double
    /// The task's loss terms and, last, "loss" (their sum).
    public var terms: [(String, Float)]
    /// Wall seconds of the step (losses, backward, optimizer; mmcv's IterTimerHook "time").
    public var seconds: Double = 0
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
///
/// Data-parallel (a `group`, as mmdet's distributed training): every rank starts from rank 0's weights and optimizer
/// state, trains on its part of each batch, averages the gradients (`GradientAllreduce`) and the logged losses, and
/// runs SyncBN layers on the statistics of the whole batch; rank 0 alone logs, draws progress and writes files.
/// Every rank issues the same collectives in the same order, and all of them stop at the same iteration.
public final class Trainer {
    public let settings: TrainerSettings
    public let task: TrainingTask
    public let workDir: String
    public let optimizer: Optimizer
    /// The data-parallel job this trainer is one rank of; nil in one process.
    public let group: ProcessGroup?
    /// Averages the gradients over the ranks (nil in one process).
    public let gradients: GradientAllreduce?
    /// Whether this process logs and writes files (rank 0, or the only process).
    public var isMain: Bool { group?.isMain ?? true }
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

    /// `group` defaults to the job mpirun started (nil in a plain process); with one, the task is sharded here.
    public init(settings: TrainerSettings, task: TrainingTask, workDir: String, group: ProcessGroup? = ProcessGroup.world) throws {
        self.settings = settings
        self.task = task
        self.workDir = workDir
        self.group = group
        optimizer = settings.makeOptimizer(task.model)
        hooks = [LoggerHook(), CheckpointHook(), EvalHook()]
        if let group {
            try task.distribute(over: group)
            gradients = GradientAllreduce(group: group, params: optimizer.groups.flatMap { $0.params.map(\.1) })
        } else {
            gradients = nil
        }
        try createDirectory(workDir)
    }

    public struct Summary {
        public var iterations: Int
        public var seconds: Double
        public var lastMetrics: [(String, Double)]
        public var bestMetric: Double?
        /// Processes in the job (1 without mpirun).
        public var ranks = 1
        /// Seconds this rank spent averaging gradients, and over how many iterations.
        public var allreduceSeconds = 0.0, allreduceCalls = 0
        /// Bytes each rank puts into the gradient allreduce per iteration.
        public var allreduceBytes = 0
    }

    /// Writes a checkpoint of the current state (weights, optimizer, `iteration`, engine RNG, best metric); rank 0
    /// alone writes in a data-parallel job, recording the number of ranks.
    public func save(_ iteration: Int, to path: String) throws {
        guard isMain else { return }
        try Checkpoint(iteration: iteration, rngState: EngineRandom.generator.state, bestMetric: bestMetric,
                       metadata: group.map { ["world_size": String($0.size)] } ?? [:])
            .save(model: task.model, optimizer: optimizer, to: path)
    }

    /// Restores latest.safetensors into the model and optimizer; returns the iteration to continue from. A
    /// checkpoint written by another number of ranks is refused: the batch and the sample stream depend on it.
    func restoreLatest() throws -> Int {
        guard FileManager.default.fileExists(atPath: latestPath) else {
            throw KitError.training("--resume: no checkpoint in \(workDir) (expected latest.safetensors)")
        }
        let ck = try Checkpoint.restore(from: latestPath, model: task.model, optimizer: optimizer)
        guard ck.iteration >= 0 && ck.iteration <= maxIters else {
            throw KitError.checkpoint("\(latestPath): iteration \(ck.iteration) is outside this schedule's 0...\(maxIters) "
                                      + "(runner.max_iters / max_epochs changed?)")
        }
        let written = ck.metadata["world_size"].flatMap(Int.init) ?? 1, ranks = group?.size ?? 1
        guard written == ranks else {
            throw KitError.training("--resume: \(latestPath) was written by \(written) process\(written == 1 ? "" : "es") and this run has "
                + "\(ranks); resume with the same number (\(written == 1 ? "without mpirun" : "mpirun -np \(written)")): each "
                + "iteration's batch depends on it")
        }
        bestMetric = ck.bestMetric
        EngineRandom.generator = SplitMix64(seed: ck.rngState)
        return ck.iteration
    }

    /// Gives every rank rank 0's BN running statistics (and other buffers), as mmdet does before a distributed
    /// evaluation: without SyncBN each rank's differ, and every rank evaluates its part of the validation set.
    public func synchronizeBuffers() throws {
        guard let group else { return }
        let params = Set(task.model.namedParameters().map(\.0))
        try group.broadcastFromMain(task.model.namedTensors().filter { !params.contains($0.0) }, "broadcasting BN buffers")
    }

    /// An interval in iterations (intervals count epochs under EpochBasedRunner).
    public func every(_ interval: Int) -> Int { settings.iterations(interval, itersPerEpoch: task.itersPerEpoch) }

    /// Lets the hooks print a line without breaking the progress bar.
    public func pauseProgress() { progress.pause() }

    /// Runs to the end of the schedule (or `stopAfter`), resuming from latest.safetensors when `resume`. Denormal
    /// floats are flushed to zero throughout (see `Denormals`).
    @discardableResult
    public func run(resume: Bool = false) throws -> Summary {
        try Denormals.flushed { try runFlushed(resume: resume) }
    }

    private func runFlushed(resume: Bool) throws -> Summary {
        maxIters = settings.maxIters(itersPerEpoch: task.itersPerEpoch)
        let schedule = settings.schedule(itersPerEpoch: task.itersPerEpoch)
        var start = 0
        if let group {
            // Rank 0 alone reads the checkpoint (the others need not see the work dir); then every rank takes rank
            // 0's weights, buffers, optimizer state and counters, resumed or fresh.
            start = try group.onMain("resuming") { resume ? try restoreLatest() : 0 } ?? 0
            try group.broadcastFromMain(task.model.namedTensors() + optimizer.stateTensors().map { ("optimizer.\($0.0)", $0.1) },
                                        "broadcasting rank 0's weights and optimizer state")
            var counters = [Double(start), bestMetric ?? 0, bestMetric == nil ? 0 : 1]
            try group.broadcast(&counters, "broadcasting the start iteration")
            start = Int(counters[0])
            bestMetric = counters[2] != 0 ? counters[1] : nil
        } else if resume {
            start = try restoreLatest()
        }
        log = try JSONLinesLog(path: logPath, keepUpTo: resume ? start : 0, writes: isMain)
        try task.prepare(startIteration: start)
        for h in hooks { try h.beforeRun(self, start: start) }

        let end = min(maxIters, stopAfter.map { start + $0 } ?? maxIters)
        endIteration = end
        let t0 = Date()
        progress = ProgressBar(total: maxIters, start: start, enabled: showProgress && isMain)
        func loop() throws {
            for it in start..<end { try step(it, schedule: schedule) }
        }
        // Ctrl-C stops at the next iteration with a checkpoint; mpirun passes Ctrl-C on as SIGTERM.
        try Interrupts.catching(group == nil ? [SIGINT] : [SIGINT, SIGTERM]) {
            if let group { try group.withSyncBatchNorm(loop) } else { try loop() }
        }
        for h in hooks { try h.afterRun(self, end: end) }
        progress.finish()
        try? writePlot()
        return Summary(iterations: end, seconds: Date().timeIntervalSince(t0), lastMetrics: lastMetrics, bestMetric: bestMetric,
                       ranks: group?.size ?? 1, allreduceSeconds: gradients?.seconds ?? 0, allreduceCalls: gradients?.calls ?? 0,
                       allreduceBytes: gradients?.bytesPerStep ?? 0)
    }

    /// One iteration: forward, (data-parallel: the losses and the stop flag averaged over the ranks), NaN guard,
    /// backward, (gradients averaged), clip, optimizer step, hooks.
    func step(_ it: Int, schedule: LRSchedule) throws {
        if group == nil && Interrupts.requested {
            try save(it, to: latestPath)
            progress.finish()
            throw KitError.interrupted(iteration: it, checkpoint: latestPath)
        }
        // Each rank draws its own dropout / drop-path masks (rank 0's stream is the single process's).
        EngineRandom.generator = SplitMix64(seed: settings.seed, stream: (3 << 32) + UInt64(group?.rank ?? 0), index: UInt64(it))
        let lr = schedule.lr(at: it)
        let started = DispatchTime.now().uptimeNanoseconds
        optimizer.lr = Float(lr)
        task.model.train()
        optimizer.zeroGrad()
        let terms = try task.losses(iteration: it)
        var total = terms[0].1
        for t in terms.dropFirst() { total = total + t.1 }
        var values = terms.map { ($0.0, $0.1.item) } + [("loss", total.item)]
        if let group {
            // One small allreduce a step: the losses the log shows (means over the ranks, as mmdet's) and whether any
            // rank was asked to stop, so every rank stops at this same iteration.
            var sums = values.map { Double($0.1) } + [Interrupts.requested ? 1 : 0]
            try group.allreduceSum(&sums, "loss allreduce at iteration \(it + 1)")
            values = zip(values, sums).map { ($0.0.0, Float($0.1 / Double(group.size))) }
            if sums.last! != 0 {
                try save(it, to: latestPath)
                progress.finish()
                group.markSharedFailure()
                throw KitError.interrupted(iteration: it, checkpoint: latestPath)
            }
        }
        let loss = values.last!.1
        guard loss.isFinite else {
            try save(it, to: latestPath)   // weights are still those of the last good step
            progress.finish()
            group?.markSharedFailure()
            throw KitError.training("loss is not finite at iteration \(it + 1) ("
                + values.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + "); training stopped. The last good weights are in "
                + "\(latestPath) (resume with --resume after lowering the lr or adding optimizer_config.grad_clip).")
        }
        total.backward()
        try gradients?.average(iteration: it)
        if let clip = settings.gradClip { clipGradNorm(optimizer.groups.flatMap { $0.params.map(\.1) }, maxNorm: clip) }
        optimizer.step()
        lossHistory.append(loss)
        progress.update(it + 1, terms: values, lr: lr)
        let record = IterationRecord(done: it + 1, lr: lr, terms: values,
                                     seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        for h in hooks { try h.afterIteration(self, record) }
    }

    /// curves.png: the loss terms (top) and the task's plotted metrics (bottom) against iterations (rank 0 only).
    public func writePlot() throws {
        guard isMain else { return }
        let entries = log.entries
        let colours = LinePlot.colours
        var lossKeys: [String] = []
        for e in entries where e["lr"] != nil {
            for (k, _) in e.objectValue ?? [] where !["iter", "lr", "time"].contains(k) && !lossKeys.contains(k) { lossKeys.append(k) }
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

/// log.jsonl and curves.png: the mean of each loss term over every `log_config.interval` iterations, and the mean
/// wall seconds of those steps ("time", as mmcv logs it; `analyze-logs cal_train_time` reads it).
public final class LoggerHook: TrainerHook {
    var window: [String: Double] = [:], order: [String] = [], count = 0, seconds = 0.0
    public init() {}

    public func afterIteration(_ t: Trainer, _ r: IterationRecord) throws {
        for (k, v) in r.terms {
            if window[k] == nil { order.append(k) }
            window[k, default: 0] += Double(v)
        }
        count += 1
        seconds += r.seconds
        guard r.done % t.settings.logInterval == 0 || r.done == t.endIteration else { return }
        try t.log.append(.object([("iter", .int(r.done)), ("lr", .double(r.lr))]
                                 + order.map { ($0, JSON.double(window[$0]! / Double(count))) }
                                 + [("time", .double((seconds / Double(count) * 1e4).rounded() / 1e4))]))
        window = [:]; order = []; count = 0; seconds = 0
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
        try t.synchronizeBuffers()
        t.task.model.eval()
        let metrics = try withNoGrad { try t.task.evaluate(iteration: r.done) }
        t.task.model.train()
        guard t.isMain, !metrics.isEmpty else { return }
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
/// so the log reads as one uninterrupted run. With `writes` false (data-parallel ranks other than 0) the entries are
/// kept in memory only.
public final class JSONLinesLog {
    public let path: String
    public let writes: Bool
    public private(set) var entries: [JSON] = []

    public init(path: String, keepUpTo iteration: Int, writes: Bool = true) throws {
        self.path = path
        self.writes = writes
        guard writes else { return }
        if iteration > 0, let text = try? String(contentsOfFile: path, encoding: .utf8) {
            entries = text.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
                .filter { ($0["iter"]?.intValue ?? 0) <= iteration }
        }
        try rewrite()
    }

    public func append(_ entry: JSON) throws {
        entries.append(entry)
        guard writes else { return }
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
