import ArgumentParser
import Data
import Evaluation
import Foundation

/// Scores predicted label maps against ground truth the way mmsegmentation's IoUMetric does.
struct SegEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seg-eval",
        abstract: "mmsegmentation-style mIoU of predicted label PNGs against ground-truth label PNGs.",
        discussion: "Files are matched by name: every PNG in --gt-dir needs a PNG of the same name in --pred-dir. "
            + "Values are the stored 8-bit grey levels or palette indices.")

    @Option(help: "Folder of ground-truth label PNGs.")
    var gtDir: String

    @Option(help: "Folder of predicted label PNGs (class ids 0..<num-classes).")
    var predDir: String

    @Option(help: "Number of classes.")
    var numClasses: Int

    @Option(help: "Label value excluded from evaluation.")
    var ignoreIndex: Int = 255

    @Flag(help: "Apply mmseg's reduce_zero_label to the ground truth (0 → ignore, v → v-1).")
    var reduceZeroLabel = false

    @Option(help: "Text file with one class name per line (default: class ids).")
    var classNames: String?

    @Option(name: .customLong("json-out"), help: "Write the metrics as fractions (null for NaN) to this JSON file.")
    var jsonOut: String?

    func validate() throws {
        guard (1...256).contains(numClasses) else { throw ValidationError("--num-classes must be in 1...256") }
        guard (0...255).contains(ignoreIndex) else { throw ValidationError("--ignore-index must be in 0...255") }
    }

    func run() throws {
        let names = try loadClassNames()
        let files = try FileManager.default.contentsOfDirectory(atPath: gtDir).filter { $0.lowercased().hasSuffix(".png") }
            .sorted()
        guard !files.isEmpty else { throw SegEvalError("\(gtDir): no PNG label files") }
        var metric = MIoUMetric(numClasses: numClasses, ignoreIndex: ignoreIndex, reduceZeroLabel: reduceZeroLabel)
        for file in files {
            let predPath = (predDir as NSString).appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: predPath) else {
                throw SegEvalError("\(predPath): missing prediction for ground truth \(file)")
            }
            let gtPath = (gtDir as NSString).appendingPathComponent(file)
            let label = try readLabelMap(gtPath)
            let pred = try readLabelMap(predPath)
            try metric.process(pred: pred, label: label, name: "\(predPath) vs \(gtPath)")
        }
        let r = metric.compute()
        printTable(r, names: names, imageCount: files.count)
        if let path = jsonOut { try writeJSON(r, to: path) }
    }

    private func loadClassNames() throws -> [String] {
        guard let path = classNames else { return (0..<numClasses).map(String.init) }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let names = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }.filter { !$0.isEmpty }
        guard names.count == numClasses else {
            throw SegEvalError("\(path): \(names.count) class names for --num-classes \(numClasses)")
        }
        return names
    }

    /// mmseg's per-class table and summary, in percent with two decimals.
    private func printTable(_ r: MIoUResult, names: [String], imageCount: Int) {
        let width = max(5, names.map(\.count).max() ?? 5)
        func row(_ cells: [String]) -> String {
            "| " + cells[0].padding(toLength: width, withPad: " ", startingAt: 0) + " | "
                + cells.dropFirst().map { String(repeating: " ", count: max(0, 6 - $0.count)) + $0 }
                .joined(separator: " | ") + " |"
        }
        let rule = "+" + String(repeating: "-", count: width + 2) + "+--------+--------+"
        print("per class results (\(imageCount) images):")
        print(rule)
        print(row(["Class", "IoU", "Acc"]))
        print(rule)
        for c in 0..<numClasses { print(row([names[c], formatPercent(r.iou[c]), formatPercent(r.acc[c])])) }
        print(rule)
        print("Summary: aAcc \(formatPercent(r.aAcc))  mIoU \(formatPercent(r.mIoU))  mAcc \(formatPercent(r.mAcc))")
    }

    private func writeJSON(_ r: MIoUResult, to path: String) throws {
        func num(_ x: Double) -> String { x.isNaN ? "null" : "\(x)" }
        let json = "{\"aAcc\": \(num(r.aAcc)), \"mIoU\": \(num(r.mIoU)), \"mAcc\": \(num(r.mAcc)), "
            + "\"IoU\": [\(r.iou.map(num).joined(separator: ", "))], "
            + "\"Acc\": [\(r.acc.map(num).joined(separator: ", "))]}\n"
        do {
            try json.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw SegEvalError("\(path): cannot write metrics: \(error.localizedDescription)")
        }
    }
}

/// A failure about the inputs, printed as one line without the usage text.
struct SegEvalError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

do {
    var command = try SegEval.parseAsRoot()
    try command.run()
} catch let error as ImageIOError {
    FileHandle.standardError.write(Data("seg-eval: error: \(error)\n".utf8))
    exit(1)
} catch let error as SegEvalError {
    FileHandle.standardError.write(Data("seg-eval: error: \(error)\n".utf8))
    exit(1)
} catch let error as MIoUError {
    FileHandle.standardError.write(Data("seg-eval: error: \(error)\n".utf8))
    exit(1)
} catch {
    SegEval.exit(withError: error)
}
