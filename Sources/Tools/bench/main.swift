import ArgumentParser
import Engine
import Foundation
import ToolSupport

/// Every benchmark case; each family lives in its own file (BenchEngine.swift, BenchCOCO.swift, ...).
let allCases: [BenchCase] = engineCases + gemmSweepCases + convSweepCases + modelCases + swinCases + swinKernelCases + dataCases + cocoCases
    + detectionCases + segmentationCases

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time the toolkit's kernels, models and data paths; one JSON line per case.")

    @Option(name: .customLong("case"), help: "Run only this case (so its peak RSS is its own).")
    var caseName: String?

    @Option(parsing: .unconditional, help: "Timed runs per case (after one warm-up); the median is reported.")
    var runs: Int = 5

    @Option(help: "fp32, or bf16 for the passes without gradients (inference cases).")
    var precision: Precision = .fp32

    @Flag(help: "List the case names and exit.")
    var list = false

    @Flag(help: "After each case, one JSON line per op with its wall time per run (see OpProfile): compare BENCH_THREADS=1 and 2 to find the ops that do not scale.")
    var profileOps = false

    func validate() throws {
        if let name = caseName, !allCases.contains(where: { $0.name == name }) {
            throw ValidationError("unknown case '\(name)'; known: \(allCases.map(\.name).joined(separator: ", "))")
        }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    }

    func run() throws {
        if list { allCases.forEach { print($0.name) }; return }
        try applyBenchEnvironment()
        try MixedPrecision.select(precision)
        for c in allCases where caseName == nil || c.name == caseName {
            let (body, extra) = try c.setUp()
            OpProfile.enabled = profileOps
            OpProfile.reset()
            let times = try sortedSeconds(runs: runs, body), t = times[times.count / 2]
            OpProfile.enabled = false
            report(c.name, medianSeconds: t, minSeconds: times[0], extra: extra(t))
            if profileOps { reportOps(c.name, runs: runs + 1) }
        }
    }
}

Bench.mainReportingErrors()
