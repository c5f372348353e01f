import Engine
import Foundation

/// Engine kernels: sgemm, convolutions (forward/backward, GFLOP/s) and memory-bound ops (GB/s, and their ratio to
/// a plain copy of the same bytes measured in the same process).
let engineCases: [BenchCase] = [
    BenchCase(name: "sgemm_1024") {
        let n = 1024
        let a = Tensor(zeros: [n, n], value: 0.5), b = Tensor(zeros: [n, n], value: 0.25)
        return ({ _ = withNoGrad { matmul(a, b) } }, { t in ["gflops": 2 * Double(n * n * n) / t / 1e9] })
    },
    convCase("conv3x3_256_56_fwd", c: 256, o: 256, hw: 56, k: 3, backward: false),
    convCase("conv3x3_256_56_bwd", c: 256, o: 256, hw: 56, k: 3, backward: true),
    convCase("conv1x1_1024_256_14_fwd", c: 1024, o: 256, hw: 14, k: 1, backward: false),
    convCase("conv1x1_1024_256_14_bwd", c: 1024, o: 256, hw: 14, k: 1, backward: true),
    memoryCase("layernorm_3136x96") { x in
        let w = Tensor(zeros: [96], value: 1), b = Tensor(zeros: [96])
        return { _ = layerNorm(x, weight: w, bias: b) }
    },
    memoryCase("softmax_3136x96") { x in { _ = x.softmax(axis: -1) } },
    memoryCase("gelu_3136x96") { x in { _ = x.gelu() } },
    memoryCase("relu_3136x96") { x in { _ = x.relu() } },
    memoryCase("sigmoid_3136x96") { x in { _ = x.sigmoid() } },
    memoryCase("add_3136x96", arrays: 3) { x in let y = x.copy(); return { _ = x + y } },
    memoryCase("mul_scalar_3136x96") { x in { _ = x * 0.5 } },
    memoryCase("batchnorm_eval_96x3136", shape: [1, 96, 56, 56]) { x in
        let w = Tensor(zeros: [96], value: 1), b = Tensor(zeros: [96]), m = Tensor(zeros: [96]), v = Tensor(zeros: [96], value: 1)
        return { _ = batchNorm(x, runningMean: m, runningVar: v, weight: w, bias: b, training: false) }
    },
]

/// sgemm GFLOP/s at the size a convolution case runs, so ratios compare like with like.
func sgemmGFlops(m: Int, n: Int, k: Int) -> Double {
    let a = Tensor(zeros: [m, k], value: 0.5), b = Tensor(zeros: [k, n], value: 0.25)
    let t = medianSeconds(runs: 5) { _ = withNoGrad { matmul(a, b) } }
    return 2 * Double(m * n * k) / t / 1e9
}

func convCase(_ name: String, c: Int, o: Int, hw: Int, k: Int, backward: Bool) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let x = Tensor(zeros: [1, c, hw, hw], value: 0.1, requiresGrad: backward)
        let w = Tensor(zeros: [o, c, k, k], value: 0.01, requiresGrad: backward)
        let flops = 2 * Double(o * c * k * k * hw * hw) * (backward ? 2 : 1)
        let body: () -> Void = backward
            ? { x.zeroGrad(); w.zeroGrad(); conv2d(x, w, padding: (k / 2, k / 2)).sum().backward() }
            : { _ = withNoGrad { conv2d(x, w, padding: (k / 2, k / 2)) } }
        let reference = sgemmGFlops(m: o, n: hw * hw, k: c * k * k)
        return (body, { t in
            let g = flops / t / 1e9
            return ["gflops": g, "sgemm_gflops_same_shape": reference, "ratio_to_sgemm": g / reference]
        })
    }
}

/// A memory-bound op on a 1×3136×96 tensor (or `shape`) that reads and writes `arrays` tensors of that size: GB/s
/// over those bytes, and the ratio of its time to a memcpy of the same bytes (`time_vs_copy`; the issue's target ≤ 2).
func memoryCase(_ name: String, shape: [Int] = [1, 3136, 96], arrays: Int = 2,
                _ make: @escaping (Tensor) -> () -> Void) -> BenchCase {
    BenchCase(name: name) {
        let x = Tensor((0..<shape.reduce(1, *)).map { Float($0 % 97) / 32 - 1.5 }, shape: shape)
        let bytes = Double(arrays * x.count * 4)
        let src = Tensor(zeros: [x.count]), dst = Tensor(zeros: [x.count])
        let copy = medianSeconds(runs: 50) { dst.data.update(from: src.data, count: src.count) }
        let body = make(x)
        return ({ withNoGrad { for _ in 0..<20 { body() } } }, { t in
            let per = t / 20
            // The copy moved two arrays' bytes; scale it to this op's.
            let copySame = copy * Double(arrays) / 2
            return ["gb_per_s": bytes / per / 1e9, "copy_gb_per_s": bytes / copySame / 1e9, "time_vs_copy": per / copySame]
        })
    }
}

/// `gemm_sweep`: single-threaded GEMMs of the shapes the models run (im2col and 1×1 convolutions with their
/// backward transposes, Swin's linear layers, window attention's 49×49 products), each timed on every library in
/// one process: one JSON line per shape with the fewest milliseconds of each, the one `GEMMPolicy` picks and how
/// much slower that is than the best. The data behind `GEMMPolicy.automatic`.
let gemmSweepCases: [BenchCase] = [
    BenchCase(name: "gemm_sweep") {
        let runs = Int(ProcessInfo.processInfo.environment["BENCH_SWEEP_RUNS"] ?? "") ?? 5
        let shapes: [(name: String, m: Int, n: Int, k: Int, ta: Bool, tb: Bool)] = [
            ("square_1024", 1024, 1024, 1024, false, false),
            ("im2col_64_56", 64, 3136, 576, false, false), ("im2col_256_14", 256, 196, 2304, false, false),
            ("im2col_512_7", 512, 49, 4608, false, false), ("conv1x1_256_56", 256, 3136, 64, false, false),
            ("conv1x1_1024_14", 1024, 196, 256, false, false),
            ("im2col_64_56_dgrad", 576, 3136, 64, true, false), ("im2col_64_56_wgrad", 64, 576, 3136, false, true),
            ("linear_qkv_s1", 3136, 288, 96, false, true), ("linear_fc1_s1", 3136, 384, 96, false, true),
            ("linear_fc2_s3", 196, 384, 1536, false, true), ("linear_s1_wgrad", 288, 96, 3136, true, false),
            ("attn_qk_49", 49, 49, 32, false, false), ("attn_pv_49", 49, 32, 49, false, false),
            ("attn_dq_49", 49, 32, 49, true, false),
        ]
        var worst = 1.0
        for s in shapes {
            var fields: [String: Double] = [:]
            for kernel in GEMMPolicy.candidates {
                fields[kernel.rawValue + "_ms"] = timeGEMM(kernel, m: s.m, n: s.n, k: s.k, transA: s.ta, transB: s.tb, runs: runs) * 1000
            }
            let chosen = GEMMPolicy.kernel(m: s.m, n: s.n, k: s.k)
            let best = fields.values.min()!, ratio = fields[chosen.rawValue + "_ms"]! / best
            worst = max(worst, ratio)
            let fmt = fields.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \(String(format: "%.4f", $0.value))" }
            print("{\"case\": \"gemm_sweep\", \"shape\": \"\(s.name)\", \"m\": \(s.m), \"n\": \(s.n), \"k\": \(s.k), "
                  + fmt.joined(separator: ", ") + ", \"gflops_best\": \(String(format: "%.1f", 2 * Double(s.m * s.n * s.k) / best / 1e6)), "
                  + "\"chosen\": \"\(chosen.rawValue)\", \"chosen_vs_best\": \(String(format: "%.3f", ratio))}")
        }
        return ({}, { _ in ["worst_chosen_vs_best": worst] })
    },
]
