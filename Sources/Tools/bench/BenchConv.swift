import Engine
import Foundation

/// `conv_sweep`: every convolution shape of ResNet-50 / ACmix-ResNet-50 at 224 (batch 1 and 2) and of RetinaNet's
/// FPN and head at 512, each pass timed in each implementation in one process: one JSON line per shape and pass with
/// the fewest CPU milliseconds of each (`engine_ms`, `onednn_plain_ms`, `onednn_blocked_ms`; with more than one thread
/// the fewest wall milliseconds), the one `ConvPolicy`
/// picks and how much slower that is than the best. The data behind `ConvPolicy.automatic`; run it with
/// `BENCH_THREADS=1` to compare kernels, not threading. `BENCH_SWEEP_SHAPES=a,b` keeps the shapes whose names contain
/// one of the words, `BENCH_SWEEP_PASSES=forward,...` those passes.
let convSweepCases: [BenchCase] = [
    BenchCase(name: "conv_sweep") {
        let runs = Int(ProcessInfo.processInfo.environment["BENCH_SWEEP_RUNS"] ?? "") ?? 5
        var worst = 1.0
        let env = ProcessInfo.processInfo.environment
        let words = env["BENCH_SWEEP_SHAPES"].map { $0.split(separator: ",").map(String.init) }
        let passes = env["BENCH_SWEEP_PASSES"].map { $0.split(separator: ",").map(String.init) }
        for s in ConvShape.sweep where words?.contains(where: { s.name.contains($0) }) ?? true {
            let x = Tensor((0..<(s.n * s.c * s.hw * s.hw)).map { Float($0 % 13) / 13 - 0.5 }, shape: [s.n, s.c, s.hw, s.hw])
            let w = Tensor((0..<(s.o * s.c / s.groups * s.k * s.k)).map { Float($0 % 7) / 70 - 0.05 },
                           shape: [s.o, s.c / s.groups, s.k, s.k])
            let y = withNoGrad { conv2d(x, w, stride: (s.stride, s.stride), padding: (s.k / 2, s.k / 2), groups: s.groups) }
            // The forward as inference runs it: BatchNorm folded into the epilogue with the ReLU, and for the
            // bottleneck's last 1×1 the shortcut added before it.
            let scale = Tensor((0..<s.o).map { 0.5 + Float($0 % 5) / 10 }, shape: [s.o])
            let shift = Tensor((0..<s.o).map { Float($0 % 3) / 10 - 0.1 }, shape: [s.o])
            let shortcut = s.residual ? Tensor((0..<y.count).map { Float($0 % 11) / 11 - 0.5 }, shape: y.shape) : nil
            for pass in [ConvPass.forward, .backwardData, .backwardWeights] where passes?.contains("\(pass)") ?? true {
                var fields: [String: Double] = [:]
                for impl in ConvImplementation.allCases {
                    ConvPolicy.forced = impl
                    let body: () -> Void = {
                        switch pass {
                        case .forward:
                            _ = withNoGrad {
                                conv2dFused(x, w, scale: scale, shift: shift, residual: shortcut, relu: true, stride: (s.stride, s.stride),
                                            padding: (s.k / 2, s.k / 2), groups: s.groups)
                            }
                        case .backwardData, .backwardWeights:
                            _ = conv2dGradients(x, w, y, stride: (s.stride, s.stride), padding: (s.k / 2, s.k / 2), groups: s.groups,
                                                input: pass == .backwardData, weight: pass == .backwardWeights)
                        }
                    }
                    let wall = sortedSeconds(runs: runs, body)[0]
                    // CPU time compares kernels single-threaded; with more threads the wall time is what counts.
                    fields[impl.rawValue + "_ms"] = (Threads.count == 1 ? lastMinCPUSeconds : wall) * 1000
                }
                ConvPolicy.forced = nil
                let g = s.geometry
                let chosen = ConvPolicy.implementation(for: g, pass)
                let best = ConvImplementation.allCases.map { fields[$0.rawValue + "_ms"]! }.min()!
                let ratio = fields[chosen.rawValue + "_ms"]! / best
                worst = max(worst, ratio)
                let fmt = fields.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \(String(format: "%.3f", $0.value))" }
                print("{\"case\": \"conv_sweep\", \"shape\": \"\(s.name)\", \"pass\": \"\(pass)\", " + fmt.joined(separator: ", ")
                      + ", \"chosen\": \"\(chosen.rawValue)\", \"chosen_vs_best\": \(String(format: "%.3f", ratio))}")
            }
        }
        ConvPolicy.forced = nil
        return ({}, { _ in ["worst_chosen_vs_best": worst] })
    },
]

struct ConvShape {
    var name: String, n: Int, c: Int, o: Int, hw: Int, k: Int, stride: Int = 1, groups: Int = 1
    /// A bottleneck's last convolution: its forward adds the shortcut before the ReLU.
    var residual = false

    var geometry: Conv2dGeometry {
        Conv2dGeometry([n, c, hw, hw], [o, c / groups, k, k], stride: (stride, stride), padding: (k / 2, k / 2), groups: groups)
    }

    /// ResNet-50's convolutions at 224 (the ACmix ones: its q/k/v 1×1 and shift conv), at batch 1 and 2, then
    /// RetinaNet's at 512 (FPN laterals and outputs, extra levels, head towers and predictors) at batch 2.
    static let sweep: [ConvShape] = {
        var out: [ConvShape] = []
        for n in [1, 2] {
            let b = "_b\(n)"
            out += [
                ConvShape(name: "stem7x7_3_64_224" + b, n: n, c: 3, o: 64, hw: 224, k: 7, stride: 2),
                ConvShape(name: "1x1_64_64_56" + b, n: n, c: 64, o: 64, hw: 56, k: 1),
                ConvShape(name: "3x3_64_64_56" + b, n: n, c: 64, o: 64, hw: 56, k: 3),
                ConvShape(name: "1x1_64_256_56" + b, n: n, c: 64, o: 256, hw: 56, k: 1),
                ConvShape(name: "1x1_256_64_56" + b, n: n, c: 256, o: 64, hw: 56, k: 1),
                ConvShape(name: "1x1_256_128_56" + b, n: n, c: 256, o: 128, hw: 56, k: 1),
                ConvShape(name: "3x3s2_128_128_56" + b, n: n, c: 128, o: 128, hw: 56, k: 3, stride: 2),
                ConvShape(name: "1x1s2_256_512_56" + b, n: n, c: 256, o: 512, hw: 56, k: 1, stride: 2),
                ConvShape(name: "3x3_128_128_28" + b, n: n, c: 128, o: 128, hw: 28, k: 3),
                ConvShape(name: "1x1_128_512_28" + b, n: n, c: 128, o: 512, hw: 28, k: 1),
                ConvShape(name: "1x1_512_128_28" + b, n: n, c: 512, o: 128, hw: 28, k: 1),
                ConvShape(name: "3x3_256_256_14" + b, n: n, c: 256, o: 256, hw: 14, k: 3),
                ConvShape(name: "1x1_1024_256_14" + b, n: n, c: 1024, o: 256, hw: 14, k: 1),
                ConvShape(name: "1x1_256_1024_14" + b, n: n, c: 256, o: 1024, hw: 14, k: 1),
                ConvShape(name: "3x3_512_512_7" + b, n: n, c: 512, o: 512, hw: 7, k: 3),
                ConvShape(name: "1x1_2048_512_7" + b, n: n, c: 2048, o: 512, hw: 7, k: 1),
                ConvShape(name: "1x1_512_2048_7" + b, n: n, c: 512, o: 2048, hw: 7, k: 1),
                ConvShape(name: "acmix_qkv_64_192_56" + b, n: n, c: 64, o: 192, hw: 56, k: 1),
                ConvShape(name: "acmix_qkv_256_768_14" + b, n: n, c: 256, o: 768, hw: 14, k: 1),
                ConvShape(name: "acmix_dep_144_64_56" + b, n: n, c: 144, o: 64, hw: 56, k: 3, groups: 16),
                ConvShape(name: "acmix_dep_576_256_14" + b, n: n, c: 576, o: 256, hw: 14, k: 3, groups: 64),
                // ACmix's fc (3·heads → k² per head channel) on its [N, 12, head_dim, H·W] view: 64×196 = 112² at layer 1.
                ConvShape(name: "acmix_fc_12_9_112" + b, n: n, c: 12, o: 9, hw: 112, k: 1),
                ConvShape(name: "acmix_fc_12_9_224" + b, n: n, c: 12, o: 9, hw: 224, k: 1),
            ]
        }
        out += [
            ConvShape(name: "fpn_lateral_512_256_64_b2", n: 2, c: 512, o: 256, hw: 64, k: 1),
            ConvShape(name: "fpn_lateral_2048_256_16_b2", n: 2, c: 2048, o: 256, hw: 16, k: 1),
            ConvShape(name: "fpn_3x3_256_256_64_b2", n: 2, c: 256, o: 256, hw: 64, k: 3),
            ConvShape(name: "fpn_3x3_256_256_16_b2", n: 2, c: 256, o: 256, hw: 16, k: 3),
            ConvShape(name: "fpn_p6_3x3s2_2048_256_16_b2", n: 2, c: 2048, o: 256, hw: 16, k: 3, stride: 2),
            ConvShape(name: "retina_3x3_256_256_8_b2", n: 2, c: 256, o: 256, hw: 8, k: 3),
            ConvShape(name: "retina_cls_3x3_256_720_64_b2", n: 2, c: 256, o: 720, hw: 64, k: 3),
            ConvShape(name: "retina_reg_3x3_256_36_64_b2", n: 2, c: 256, o: 36, hw: 64, k: 3),
            ConvShape(name: "retina_cls_3x3_256_720_4_b2", n: 2, c: 256, o: 720, hw: 4, k: 3),
        ]
        // ResNet-50 and RetinaNet's head at detection size (800×1333, one image): square maps of about the same area.
        out += [
            ConvShape(name: "det_stem7x7_3_64_1024", n: 1, c: 3, o: 64, hw: 1024, k: 7, stride: 2),
            ConvShape(name: "det_1x1_64_64_256", n: 1, c: 64, o: 64, hw: 256, k: 1),
            ConvShape(name: "det_3x3_64_64_256", n: 1, c: 64, o: 64, hw: 256, k: 3),
            ConvShape(name: "det_1x1_64_256_256", n: 1, c: 64, o: 256, hw: 256, k: 1, residual: true),
            ConvShape(name: "det_1x1_256_64_256", n: 1, c: 256, o: 64, hw: 256, k: 1),
            ConvShape(name: "det_1x1_256_128_256", n: 1, c: 256, o: 128, hw: 256, k: 1),
            ConvShape(name: "det_3x3s2_128_128_256", n: 1, c: 128, o: 128, hw: 256, k: 3, stride: 2),
            ConvShape(name: "det_1x1s2_256_512_256", n: 1, c: 256, o: 512, hw: 256, k: 1, stride: 2),
            ConvShape(name: "det_3x3_128_128_128", n: 1, c: 128, o: 128, hw: 128, k: 3),
            ConvShape(name: "det_1x1_128_512_128", n: 1, c: 128, o: 512, hw: 128, k: 1, residual: true),
            ConvShape(name: "det_1x1_512_128_128", n: 1, c: 512, o: 128, hw: 128, k: 1),
            ConvShape(name: "det_3x3_256_256_64", n: 1, c: 256, o: 256, hw: 64, k: 3),
            ConvShape(name: "det_1x1_1024_256_64", n: 1, c: 1024, o: 256, hw: 64, k: 1),
            ConvShape(name: "det_1x1_256_1024_64", n: 1, c: 256, o: 1024, hw: 64, k: 1, residual: true),
            ConvShape(name: "det_3x3_512_512_32", n: 1, c: 512, o: 512, hw: 32, k: 3),
            ConvShape(name: "det_head_3x3_256_256_128", n: 1, c: 256, o: 256, hw: 128, k: 3),
            ConvShape(name: "det_cls_3x3_256_720_128", n: 1, c: 256, o: 720, hw: 128, k: 3),
            ConvShape(name: "det_reg_3x3_256_36_128", n: 1, c: 256, o: 36, hw: 128, k: 3),
        ]
        return out
    }()
}
