import ArgumentParser
import Engine
import Foundation
import Tasks
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

    @Option(help: "fp32, bf16 or int8 for the passes without gradients (inference cases; int8 calibrates the case's model on its own input first).")
    var precision: Precision = .fp32

    @Option(help: "fp32 or bf16 for the training passes (training cases: forward and backward convolutions and GEMMs on bf16 operands, as det-train --amp bf16).")
    var amp: Precision = .fp32

    @Flag(help: "List the case names and exit.")
    var list = false

    @Flag(help: "After each case, one JSON line per op with its wall time per run (see OpProfile): compare BENCH_THREADS=1 and 2 to find the ops that do not scale.")
    var profileOps = false

    @Flag(help: "As --profile-ops, with one line per op and input shapes (which convolution, which product).")
    var profileShapes = false

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
        try MixedPrecision.selectTraining(amp, option: "--amp")
        for c in allCases where caseName == nil || c.name == caseName {
            benchModel = nil
            let (body, extra) = try c.setUp()
            if precision == .int8 {
                guard let model = benchModel else { throw KitError.usage("--precision int8: case \(c.name) runs no whole model to calibrate") }
                let (m, report) = try withNoGrad { try Int8Calibration.calibrate(model: model, count: 1, forward: { _ in try body() }) }
                writeStderr(report.summary + "\n")
                Int8Inference.model = m
                Int8Inference.nativeCalls = 0
                Int8Inference.emulatedCalls = 0
            }
            // After calibration: int8 packs only the weights that stay in floating point.
            if let model = benchModel { FrozenWeights.install(module: model) }
            OpProfile.enabled = profileOps || profileShapes
            OpProfile.byShape = profileShapes
            OpProfile.reset()
            let times = try sortedSeconds(runs: runs, body), t = times[times.count / 2]
            OpProfile.enabled = false
            report(c.name, medianSeconds: t, minSeconds: times[0], extra: extra(t))
            if profileOps || profileShapes { reportOps(c.name, runs: max(1, runs)) }
        }
    }
}

Bench.mainReportingErrors()
