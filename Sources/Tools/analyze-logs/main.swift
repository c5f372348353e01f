import ArgumentParser
import Data
import Engine
import Foundation
import NN
import ToolSupport
import Training

/// mmdetection's tools/analysis_tools/analyze_logs.py on det-train / seg-train logs (work dir log.jsonl).
struct AnalyzeLogs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze-logs",
        abstract: "Plot training curves of one or more runs, or summarise their step times (log.jsonl of det-train / seg-train).",
        subcommands: [PlotCurve.self, CalTrainTime.self])
}

/// A log.jsonl read whole: its training entries (with "lr") and evaluation entries.
struct TrainingLog {
    let path: String
    let entries: [JSON]

    init(_ path: String) throws {
        self.path = path
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw KitError.io("\(path): cannot read the log") }
        entries = try text.split(separator: "\n").enumerated().map { i, line in
            do { return try JSON.parse(String(line), source: path) } catch {
                throw KitError.format("\(path): line \(i + 1) is not JSON (\(error))")
            }
        }
        guard !entries.isEmpty else { throw KitError.format("\(path): the log is empty") }
    }

    /// (iteration, value) of every entry holding `key`.
    func points(_ key: String) -> [(x: Double, y: Double)] {
        entries.compactMap { e in
            guard let it = e["iter"]?.doubleValue, let v = e[key]?.doubleValue else { return nil }
            return (it, v)
        }
    }
}

struct PlotCurve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot_curve",
        abstract: "One panel per key, one line per log, against iterations; written as a PNG.")

    @Argument(help: "log.jsonl files.")
    var logs: [String]

    @Option(parsing: .upToNextOption, help: "Keys to plot (loss terms such as loss, loss_cls; metrics such as bbox_mAP, mIoU).")
    var keys: [String] = ["loss"]

    @Option(parsing: .upToNextOption, help: "Legend names, one per log (default: each log's folder name).")
    var legend: [String] = []

    @Option(help: "Title above the panels.")
    var title: String?

    @Option(help: "Output PNG.")
    var out = "curves_compared.png"

    func validate() throws {
        guard !logs.isEmpty else { throw ValidationError("give at least one log.jsonl") }
        guard legend.isEmpty || legend.count == logs.count else { throw ValidationError("--legend needs one name per log (\(logs.count))") }
        guard !keys.isEmpty else { throw ValidationError("--keys needs at least one key") }
    }

    func run() throws {
        try refuseOverwriting(("--out", out), inputs: logs.map { ("log", $0) })
        let runs = try logs.map(TrainingLog.init)
        let names = legend.isEmpty ? logs.map { (($0 as NSString).deletingLastPathComponent as NSString).lastPathComponent } : legend
        let colours = LinePlot.colours
        let panels = try keys.map { key in
            LinePlot.Panel(title: key, series: try zip(runs, names).enumerated().map { i, pair in
                let points = pair.0.points(key)
                guard !points.isEmpty else { throw KitError.usage("\(pair.0.path) does not contain the key '\(key)'") }
                return LinePlot.Series(name: pair.1.isEmpty ? "run \(i + 1)" : pair.1, points: points, colour: colours[i % colours.count])
            })
        }
        var image = LinePlot().render(panels)
        if let title {
            var framed = Image(width: image.width, height: image.height + 20, fill: (255, 255, 255))
            framed.drawText(title, x: (image.width - BitmapFont.width(of: title)) / 2, y: 6, (0, 0, 0))
            for y in 0..<image.height { for x in 0..<image.width { for c in 0..<3 {
                framed.pixels[((y + 20) * image.width + x) * 3 + c] = image.pixels[(y * image.width + x) * 3 + c]
            } } }
            image = framed
        }
        try writePNG(image, to: out)
        writeStderr("analyze-logs: \(keys.joined(separator: ", ")) of \(logs.count) log(s) → \(out)\n")
    }
}

struct CalTrainTime: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cal_train_time",
        abstract: "Average, slowest and fastest step time of each log (the \"time\" its training entries hold).",
        discussion: """
            Each training entry holds the mean step time of the iterations since
            the previous one. The first entry (warm-up: first allocations, JIT
            kernels) is left out unless --include-outliers, as mmdet leaves out
            each epoch's first iteration.
            """)

    @Argument(help: "log.jsonl files.")
    var logs: [String]

    @Flag(name: .customLong("include-outliers"), help: "Keep the first logged interval.")
    var includeOutliers = false

    func run() throws {
        for path in logs {
            let log = try TrainingLog(path)
            // (first iteration, last iteration, mean seconds) of every logged interval.
            var intervals: [(from: Int, to: Int, time: Double)] = [], previous = 0
            for e in log.entries where e["lr"] != nil {
                guard let it = e["iter"]?.intValue else { continue }
                if let t = e["time"]?.doubleValue {
                    guard t.isFinite && t >= 0 else { throw KitError.data("\(path): iteration \(it): \"time\" must be a finite number ≥ 0, got \(t)") }
                    // An iteration at or below the previous one starts a resumed run: its interval's length is unknown.
                    if it > previous { intervals.append((previous + 1, it, t)) }
                }
                previous = it
            }
            guard !intervals.isEmpty else {
                throw KitError.usage("\(path) has no step times over increasing iterations (logs from before \"time\" was logged?)")
            }
            if !includeOutliers && intervals.count > 1 { intervals.removeFirst() }
            let iters = intervals.map { Double($0.to - $0.from + 1) }, total = iters.reduce(0, +)
            let mean = zip(intervals, iters).map { $0.time * $1 }.reduce(0, +) / total
            let std = (intervals.map { ($0.time - mean) * ($0.time - mean) }.reduce(0, +) / Double(intervals.count)).squareRoot()
            let slow = intervals.max { $0.time < $1.time }!, fast = intervals.min { $0.time < $1.time }!
            print("-----Analyze train time of \(path)-----")
            print(String(format: "slowest interval: iterations %d-%d, average time is %.4f s/iter", slow.from, slow.to, slow.time))
            print(String(format: "fastest interval: iterations %d-%d, average time is %.4f s/iter", fast.from, fast.to, fast.time))
            print(String(format: "time std over intervals is %.4f", std))
            print(String(format: "average iter time: %.4f s/iter over %d iterations", mean, Int(total)))
        }
    }
}

AnalyzeLogs.mainReportingErrors()
