import Engine
import Foundation
import NN

/// One benchmark case: `setUp` builds the inputs once, the returned closure is the timed body.
/// `extra` turns the median seconds into case-specific figures (GFLOP/s, GB/s, ratios).
struct BenchCase {
    var name: String
    var setUp: () throws -> (body: () throws -> Void, extra: (_ medianSeconds: Double) -> [String: Double])
}

/// The model of the inference case being set up, for `--precision int8` (its convolutions are calibrated on the case's
/// own input before timing); cases that run a whole model set it.
nonisolated(unsafe) var benchModel: Module?

/// Peak resident set size of this process (VmHWM), in MiB.
/// The package root (this file is Sources/Tools/bench/Bench.swift; the bench runs from the source tree).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

func peakRSSMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kb / 1024
    }
    return 0
}

/// User + system CPU seconds this process has used so far (all its threads).
func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

/// The fewest CPU seconds one timed run of the last `sortedSeconds` call took. On a loaded machine wall times
/// mostly measure the neighbours; with `BENCH_THREADS=1` this is the steadier figure to compare changes by.
nonisolated(unsafe) var lastMinCPUSeconds = 0.0

/// Runs `body` once to warm up, then `runs` times; returns the wall times in seconds, fastest first.
func sortedSeconds(runs: Int, _ body: () throws -> Void) rethrows -> [Double] {
    // The profile's last line per run: work after the last taped op (post-processing: decoding, NMS).
    func run() throws {
        try body()
        if OpProfile.enabled { OpProfile.mark("(untaped work after the last op)") }
    }
    try run()
    // The profile counts the timed runs only: the warm-up's one-time work (oneDNN's JIT compilation, 30 ms on one
    // small convolution) made cheap ops look slow.
    if OpProfile.enabled { OpProfile.reset() }
    var times: [Double] = [], cpu: [Double] = []
    for _ in 0..<max(1, runs) {
        let c0 = processCPUSeconds(), t0 = DispatchTime.now().uptimeNanoseconds
        try run()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        cpu.append(processCPUSeconds() - c0)
    }
    lastMinCPUSeconds = cpu.min() ?? 0
    return times.sorted()
}

/// The median of `sortedSeconds`.
func medianSeconds(runs: Int, _ body: () throws -> Void) rethrows -> Double {
    let times = try sortedSeconds(runs: runs, body)
    return times[times.count / 2]
}

/// One JSON line: {"case": ..., "median_ms": ..., "min_ms": ..., "peak_rss_mb": ..., extra...}. The minimum is the
/// steadier figure on a shared, noisy machine; the median is the headline.
func report(_ name: String, medianSeconds: Double, minSeconds: Double, extra: [String: Double]) {
    var fields = ["\"case\": \"\(name)\"",
                  "\"median_ms\": \(String(format: "%.3f", medianSeconds * 1000))",
                  "\"min_ms\": \(String(format: "%.3f", minSeconds * 1000))",
                  "\"cpu_min_ms\": \(String(format: "%.3f", lastMinCPUSeconds * 1000))",
                  "\"peak_rss_mb\": \(String(format: "%.1f", peakRSSMegabytes()))",
                  "\"peak_tensor_mb\": \(String(format: "%.1f", Double(Storage.peakBytes) / 1048576))"]
    // Where the figure was taken and which kernels ran it (figures from different CPUs are not comparable).
    let cpu = CPUInfo.current
    fields += ["\"cpu\": \"\(cpu.summary)\"", "\"isa\": \"\(cpu.oneDNNISA)\"",
               "\"gemm\": \"\(GEMMPolicy.chosenSummary)\"", "\"openblas_core\": \"\(GEMMPolicy.openBLASCore)\"",
               "\"threads\": \(Threads.count)", "\"precision\": \"\(MixedPrecision.inference.rawValue)\"", "\"amp\": \"\(MixedPrecision.training.rawValue)\""]
    if MixedPrecision.nativeCalls + MixedPrecision.emulatedCalls > 0 {
        fields += ["\"bf16_passes\": \"\(MixedPrecision.nativeCalls) native, \(MixedPrecision.emulatedCalls) emulated\"",
                   "\"bf16_native_check\": \"\(MixedPrecision.nativeVerified ? "passed" : CPUInfo.current.hasBF16 ? "failed" : "no bf16")\""]
    }
    if ConvChain.passes > 0 {
        fields += ["\"chain\": \"\(ConvChain.summary)\""]
    }
    if let m = Int8Inference.model {
        fields += ["\"int8_layers\": \(m.count)",
                   "\"int8_passes\": \"\(Int8Inference.nativeCalls) native, \(Int8Inference.emulatedCalls) emulated\""]
    }
    for (k, v) in extra.sorted(by: { $0.key < $1.key }) {
        fields.append("\"\(k)\": \(String(format: "%.4g", v))")
    }
    print("{" + fields.joined(separator: ", ") + "}")
}

/// `BENCH_THREADS=1` runs single-threaded (to compare kernels by CPU time on a loaded machine, or with
/// `bench_torch.py --threads 1`). OpenBLAS and oneDNN stay single-threaded either way: the engine splits their work
/// over its own threads (`Threads`).
/// `BENCH_CONV=engine|onednn_plain|onednn_blocked` forces one convolution implementation everywhere (default: the
/// per-shape choice of `ConvPolicy`).
func applyBenchEnvironment() throws {
    let env = ProcessInfo.processInfo.environment
    if let s = env["BENCH_THREADS"], let n = Int(s), n >= 1 {
        _ = Threads.count   // its first read sets OpenBLAS to one thread
        Threads.count = n
    }
    if let s = env["BENCH_CONV"], !s.isEmpty {
        guard let impl = ConvImplementation(rawValue: s) else {
            throw KitError.usage("BENCH_CONV=\(s): expected one of \(ConvImplementation.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        ConvPolicy.forced = impl
    }
}

/// `--profile-ops`: one JSON line per op of the last case, slowest first, wall milliseconds per timed run (the warm-up
/// is not counted) and calls per run.
func reportOps(_ name: String, runs: Int) {
    for (op, e) in OpProfile.slowestFirst {
        print("{\"case\": \"\(name)\", \"op\": \"\(op)\", \"ms_per_run\": \(String(format: "%.3f", e.seconds * 1000 / Double(runs))), " +
              "\"calls_per_run\": \(e.calls / runs), \"threads\": \(Threads.count)}")
    }
}
