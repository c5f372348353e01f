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
    /// Validation metrics as fractions (e.g. bbox_mAP...); empty when no evaluator is wired.
    func evaluate(iteration: Int) throws -> [(String, Double)]
}

public enum TrainingError: Error, CustomStringConvertible {
    case nonFinite(iteration: Int, terms: [(String, Float)], checkpoint: String)
    case interrupted(iteration: Int, checkpoint: String)
    case noCheckpoint(String)

    public var description: String {
        switch self {
        case let .nonFinite(it, terms, ckpt):
            return "loss is not finite at iteration \(it + 1) (" + terms.map { "\($0.0)=\($0.1)" }.joined(separator: ", ")
                + "); training stopped. The last good weights are in \(ckpt) (resume with --resume after lowering the lr "
                + "or adding optimizer_config.grad_clip)."
        case let .interrupted(it, ckpt): return "interrupted after iteration \(it); checkpoint saved to \(ckpt) (continue with --resume)"
        case let .noCheckpoint(dir): return "--resume: no checkpoint in \(dir) (expected latest.safetensors)"
        }
    }
}

/// Set by the SIGINT handler; the loop checks it between iterations.
nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

/// The iteration loop shared by det-train and seg-train: LR schedule and warm-up, optimizer step, gradient clipping,
/// JSON-lines log, progress bar, periodic/interrupt checkpoints, evaluation with best-checkpoint keeping, NaN guard,
/// and a PNG plot of the curves.
///
/// Work dir layout: latest.safetensors (resume point), best.safetensors (best `saveBest` metric), log.jsonl,
/// curves.png.
public final class Trainer {
    public let settings: TrainerSettings
    public let task: TrainingTask
    public let workDir: String
    public let optimizer: Optimizer
    /// Total loss of every iteration run by this process, in order (for tests and summaries).
    public private(set) var lossHistory: [Float] = []
    /// Draw the progress bar on stderr.
    public var showProgress = true
    /// Stop after this many iterations (tests); nil runs to the end of the schedule.
    public var stopAfter: Int?

    public var latestPath: String { "\(workDir)/latest.safetensors" }
    public var bestPath: String { "\(workDir)/best.safetensors" }
    public var logPath: String { "\(workDir)/log.jsonl" }
    public var plotPath: String { "\(workDir)/curves.png" }

    public init(settings: TrainerSettings, task: TrainingTask, workDir: String) throws {
        self.settings = settings
        self.task = task
        self.workDir = workDir
        optimizer = settings.makeOptimizer(task.model)
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
    }

    public struct Summary {
        public var iterations: Int
        public var seconds: Double
        public var lastMetrics: [(String, Double)]
        public var bestMetric: Double?
    }

    /// Runs to the end of the schedule (or `stopAfter`), resuming from latest.safetensors when `resume`.
    @discardableResult
    public func run(resume: Bool = false) throws -> Summary {
        let perEpoch = task.itersPerEpoch
        let maxIters = settings.maxIters(itersPerEpoch: perEpoch)
        let schedule = settings.schedule(itersPerEpoch: perEpoch)
        let ckptEvery = settings.iterations(settings.checkpointInterval, itersPerEpoch: perEpoch)
        let evalEvery = settings.iterations(settings.evalInterval, itersPerEpoch: perEpoch)
        let logEvery = settings.logInterval
        var start = 0
        var best: Double?
        if resume {
            guard FileManager.default.fileExists(atPath: latestPath) else { throw TrainingError.noCheckpoint(workDir) }
            let ck = try Checkpoint.restore(from: latestPath, model: task.model, optimizer: optimizer)
            start = ck.iteration
            best = ck.bestMetric
            EngineRandom.generator = SplitMix64(seed: ck.rngState)
        }
        var log = try JSONLinesLog(path: logPath, keepUpTo: resume ? start : 0)
        try task.prepare(startIteration: start)

        interruptRequested = 0
        let previous = signal(SIGINT) { _ in interruptRequested = 1 }
        defer { signal(SIGINT, previous) }

        let end = min(maxIters, stopAfter.map { start + $0 } ?? maxIters)
        let t0 = Date()
        var window: [String: Double] = [:], windowCount = 0
        var lastMetrics: [(String, Double)] = []
        var progress = ProgressBar(total: maxIters, start: start, enabled: showProgress)
        func save(_ iteration: Int, to path: String) throws {
            try Checkpoint(iteration: iteration, rngState: EngineRandom.generator.state, bestMetric: best)
                .save(model: task.model, optimizer: optimizer, to: path)
        }

        for it in start..<end {
            if interruptRequested != 0 {
                try save(it, to: latestPath)
                progress.finish()
                throw TrainingError.interrupted(iteration: it, checkpoint: latestPath)
            }
            EngineRandom.generator = SplitMix64(seed: settings.seed, stream: 3 << 32, index: UInt64(it))
            let lr = schedule.lr(at: it)
            optimizer.lr = Float(lr)
            task.model.train()
            optimizer.zeroGrad()
            let terms = try task.losses(iteration: it)
            var total = terms[0].1
            for t in terms.dropFirst() { total = total + t.1 }
            let values = terms.map { ($0.0, $0.1.item) }
            guard total.item.isFinite else {
                try save(it, to: latestPath)   // weights are still those of the last good step
                progress.finish()
                throw TrainingError.nonFinite(iteration: it, terms: values + [("loss", total.item)], checkpoint: latestPath)
            }
            total.backward()
            if let clip = settings.gradClip { clipGradNorm(optimizer.groups.flatMap { $0.params.map(\.1) }, maxNorm: clip) }
            optimizer.step()
            lossHistory.append(total.item)
            for (k, v) in values { window[k, default: 0] += Double(v) }
            window["loss", default: 0] += Double(total.item)
            windowCount += 1
            let done = it + 1
            progress.update(done, terms: values + [("loss", total.item)], lr: lr)

            if done % logEvery == 0 || done == end {
                var entry: [(String, JSON)] = [("iter", .int(done)), ("lr", .double(lr))]
                for (k, _) in values { entry.append((k, .double(window[k]! / Double(windowCount)))) }
                entry.append(("loss", .double(window["loss"]! / Double(windowCount))))
                try log.append(.object(entry))
                window = [:]; windowCount = 0
            }
            if done % ckptEvery == 0 || done == maxIters { try save(done, to: latestPath) }
            if done % evalEvery == 0 || done == maxIters {
                progress.pause()
                task.model.eval()
                let metrics = try withNoGrad { try task.evaluate(iteration: done) }
                task.model.train()
                if !metrics.isEmpty {
                    lastMetrics = metrics
                    try log.append(.object([("iter", .int(done))] + metrics.map { ($0.0, JSON.double($0.1)) }))
                    if let key = settings.saveBest, let v = metrics.first(where: { $0.0 == key })?.1, v > (best ?? -.infinity) {
                        best = v
                        try save(done, to: latestPath)
                        try FileManager.default.removeItemIfPresent(bestPath)
                        try FileManager.default.copyItem(atPath: latestPath, toPath: bestPath)
                    }
                    FileHandle.standardError.write(Data(("iter \(done): " + metrics.map { "\($0.0) \(String(format: "%.3f", $0.1))" }
                        .joined(separator: ", ") + "\n").utf8))
                }
                try? writePlot(log.entries)
            } else if done % logEvery == 0 {
                try? writePlot(log.entries)
            }
        }
        if end > start && end % ckptEvery != 0 && end != maxIters { try save(end, to: latestPath) }
        progress.finish()
        try? writePlot(log.entries)
        return Summary(iterations: end, seconds: Date().timeIntervalSince(t0), lastMetrics: lastMetrics, bestMetric: best)
    }

    /// curves.png: the loss terms (top) and the evaluation metrics (bottom) against iterations.
    func writePlot(_ entries: [JSON]) throws {
        let colours: [RGB] = [(200, 30, 30), (30, 90, 200), (30, 160, 60), (220, 140, 0), (140, 40, 170), (0, 150, 160)]
        var lossKeys: [String] = [], metricKeys: [String] = []
        for e in entries {
            for (k, _) in e.objectValue ?? [] where k != "iter" && k != "lr" {
                if e["lr"] != nil { if !lossKeys.contains(k) { lossKeys.append(k) } }
                else if !metricKeys.contains(k) && !k.hasSuffix("_s") && !k.hasSuffix("_m") && !k.hasSuffix("_l") { metricKeys.append(k) }
            }
        }
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

extension FileManager {
    func removeItemIfPresent(_ path: String) throws { if fileExists(atPath: path) { try removeItem(atPath: path) } }
}

/// log.jsonl: one JSON object per line, flushed as written. On resume, lines past the resumed iteration are dropped
/// so the log reads as one uninterrupted run.
public struct JSONLinesLog {
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

    mutating func append(_ entry: JSON) throws {
        entries.append(entry)
        guard let h = FileHandle(forWritingAtPath: path) else { throw ConfigError("\(path): cannot open the log") }
        defer { try? h.close() }
        h.seekToEndOfFile()
        h.write(Data((entry.serialized() + "\n").utf8))
    }

    func rewrite() throws {
        let text = entries.map { $0.serialized() + "\n" }.joined()
        try text.write(toFile: path, atomically: true, encoding: .utf8)
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
        FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + line + (tty ? "" : "\n")).utf8))
        drawn = tty
    }

    public mutating func pause() { if drawn { FileHandle.standardError.write(Data("\n".utf8)); drawn = false } }
    public mutating func finish() { pause() }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%02d:%02d", t / 60, t % 60)
    }
}
