import Engine
import NN
import TestSupport
import XCTest

/// Chained bf16 inference (`ConvChain`): activations stay bf16 in oneDNN's layout between convolutions, BatchNorm
/// folded into the weights, shortcut sum and ReLU fused. Its numbers are those of the folded weights and the stored
/// activations rounded to bf16 with float32 sums; both layouts, split over one and two threads.
final class ConvChainTests: XCTestCase {
    override func setUpWithError() throws { try selectNativeBF16OrSkip() }

    override func tearDown() {
        ConvChain.enabled = true
        ConvChain.layout = savedLayout
        ConvChain.threading = .openMP
        try? MixedPrecision.select(.fp32)
    }

    private let savedLayout = ConvChain.layout

    /// Runs `body` in both layouts on 1 thread, 2 OpenMP threads and 2 slices on the pool (the thread count restored).
    private func forEachSetting(_ body: (ChainLayout, Int, ConvChain.Threading) throws -> Void) rethrows {
        let savedThreads = Threads.count
        defer { Threads.count = savedThreads }
        for layout in [ChainLayout.blocked16, .nhwc] {
            ConvChain.layout = layout
            for (threads, mode) in [(1, ConvChain.Threading.openMP), (2, .openMP), (2, .slices)] {
                Threads.count = threads
                ConvChain.threading = mode
                try body(layout, threads, mode)
            }
        }
    }

    private func values(_ n: Int, _ f: Double, _ scale: Float = 1) -> [Float] { (0..<n).map { Float(sin(Double($0) * f + 0.3)) * scale } }

    /// Every geometry a ResNet and its heads chain (1×1, 3×3, strides, dilation, channel counts off the 16-block, a
    /// batch, a shortcut sum) against the float32 convolution of the rounded operands, rounded like the chain's output.
    func testChainedConvolutionsMatchTheRoundedReference() throws {
        // (input, outputs, kernel, stride, padding, dilation, relu, residual); the 1×1 stride-2 one leaves its last
        // input row unread.
        let cases: [([Int], Int, Int, Int, Int, Int, Bool, Bool)] = [
            ([1, 40, 13, 11], 24, 3, 1, 1, 1, true, false),
            ([1, 64, 28, 28], 128, 1, 2, 0, 1, false, false),
            ([3, 32, 15, 15], 48, 3, 2, 1, 1, true, false),
            ([1, 64, 20, 20], 64, 1, 1, 0, 1, true, true),
            ([1, 32, 17, 17], 32, 3, 1, 2, 2, true, true),
            ([1, 3, 30, 30], 16, 7, 2, 3, 1, true, false),
            ([1, 3, 64, 50], 16, 7, 2, 3, 1, true, false),
            ([1, 32, 29, 31], 48, 3, 2, 1, 1, true, false),
            ([1, 8, 40, 36], 8, 3, 1, 1, 1, true, true),
        ]
        try forEachSetting { layout, threads, mode in
            for (i, (xs, o, k, s, p, d, relu, hasResidual)) in cases.enumerated() {
                let c = xs[1]
                let x = Tensor(values(xs.reduce(1, *), 0.37 + Double(i)), shape: xs)
                let w = Tensor(values(o * c * k * k, 0.11, 0.2), shape: [o, c, k, k])
                let bias = Tensor(values(o, 0.5, 0.1), shape: [o])
                let scale = Tensor(values(o, 0.9).map { 0.5 + $0 * $0 }, shape: [o])
                let shift = Tensor(values(o, 1.3, 0.2), shape: [o])
                let ho = (xs[2] + 2 * p - d * (k - 1) - 1) / s + 1, wo = (xs[3] + 2 * p - d * (k - 1) - 1) / s + 1
                let residual = hasResidual ? Tensor(values(xs[0] * o * ho * wo, 0.23), shape: [xs[0], o, ho, wo]) : nil

                let (before, fellBack) = (ConvChain.passes, ConvChain.fallbacks)
                let y = ConvChain.conv(ConvChain.enter(x), weight: w, bias: bias, scale: scale, shift: shift, stride: (s, s),
                                       padding: (p, p), dilation: (d, d), relu: relu, residual: residual.map { ConvChain.enter($0) })
                // Fewer than 16 input channels (a stem, a narrow test network) may have no kernel in a layout (nChw16c on
                // AVX512-BF16): they run per convolution (rounded differently) and come back. Every other case chains.
                let chained = ConvChain.passes == before + 1
                XCTAssertTrue(chained || (c < 16 && ConvChain.fallbacks == fellBack + 1), "\(layout): case \(i) did not run chained")
                XCTAssertEqual(y.shape, [xs[0], o, ho, wo])
                let got = y.tensor()

                // Reference: folded weights and input rounded to bf16, float32 convolution, float32 epilogue on the
                // bf16 shortcut, output rounded to bf16.
                let kk = c * k * k
                let folded = Tensor((0..<w.count).map { bf16Rounded(w.data[$0] * scale.data[$0 / kk]) }, shape: w.shape)
                let fb = Tensor((0..<o).map { bias.data[$0] * scale.data[$0] + shift.data[$0] }, shape: [o])
                let rx = Tensor((0..<x.count).map { bf16Rounded(x.data[$0]) }, shape: xs)
                try MixedPrecision.select(.fp32)
                var ref = conv2d(rx, folded, fb, stride: (s, s), padding: (p, p), dilation: (d, d))
                try MixedPrecision.select(.bf16)
                if let residual { ref = ref + Tensor((0..<residual.count).map { bf16Rounded(residual.data[$0]) }, shape: residual.shape) }
                if relu { ref = ref.relu() }
                let maxAbs = (0..<ref.count).map { abs(ref.data[$0]) }.max()!
                var worst: Float = 0
                for j in 0..<ref.count {
                    let r = bf16Rounded(ref.data[j])
                    let e = abs(got.data[j] - r) / (chained ? abs(r) / 64 + maxAbs * 1e-5 : abs(r) / 32 + maxAbs * 4e-3)
                    worst = max(worst, e)
                }
                XCTAssertLessThanOrEqual(worst, 1, "\(layout) \(threads) threads (\(mode)), case \(i): off by \(worst) of the bound")
            }
        }
    }

    /// Max pooling on chained activations: exactly the engine's on the bf16-rounded input (a maximum rounds nothing),
    /// padding never winning, split by channel blocks or rows.
    func testChainedMaxPoolingEqualsTheEngines() throws {
        forEachSetting { layout, threads, mode in
            for shape in [[1, 40, 57, 45], [3, 16, 20, 21], [1, 64, 112, 112]] {
                let x = Tensor(values(shape.reduce(1, *), 0.77).map { bf16Rounded($0 - 2) }, shape: shape)
                let got = ConvChain.maxPool(ConvChain.enter(x), kernel: 3, stride: 2, padding: 1).tensor()
                XCTAssertEqual(got.shape, x.maxPool2d(kernel: 3, stride: 2, padding: 1).shape)
                XCTAssertEqual(got.array, x.maxPool2d(kernel: 3, stride: 2, padding: 1).array, "\(layout) \(threads) threads (\(mode)) \(shape)")
            }
        }
    }

    /// Nearest resize on chained activations: exactly the engine's (`Tensor.resizeNearest`, PyTorch's size= form) on
    /// bf16 values, to sizes that are and are not twice the input; channels-last exits give the permuted tensor.
    func testChainedResizeAndChannelsLastExitAreExact() throws {
        for layout in [ChainLayout.blocked16, .nhwc] {
            ConvChain.layout = layout
            for (shape, out) in [([1, 40, 25, 42], (50, 84)), ([2, 16, 50, 84], (100, 167)), ([1, 24, 7, 9], (7, 9))] {
                let x = Tensor(values(shape.reduce(1, *), 0.41).map(bf16Rounded), shape: shape)
                let chained = ConvChain.enter(x)
                XCTAssertEqual(ConvChain.resizeNearest(chained, out.0, out.1).tensor().array, x.resizeNearest(out.0, out.1).array,
                               "\(layout) \(shape) → \(out)")
                let f32 = ConvChain.enter(x, f32: true)
                XCTAssertEqual(f32.channelsLast().array, x.permute([0, 2, 3, 1]).array, "\(layout) \(shape) channels-last")
                // Handed over without a copy where the buffer is float32 nhwc already (copied otherwise).
                XCTAssertEqual(ConvChain.enter(x, f32: true).releasingChannelsLast().array, x.permute([0, 2, 3, 1]).array,
                               "\(layout) \(shape) released channels-last")
                XCTAssertEqual(chained.channelsLast().array, x.permute([0, 2, 3, 1]).array, "\(layout) \(shape) bf16 channels-last")
            }
        }
    }

    /// int8 on chained activations: u8 input, or s8 quantized from bf16 (`int8Input`: a neck's signed output into a
    /// head), calibrated s8 weights, the BatchNorm and a bf16 or u8 shortcut in the epilogue, output u8 with the next
    /// scale (or float32, or bf16), against the float32 convolution of the dequantized operands quantized the same way:
    /// equal up to one output step where float rounding lands on a half.
    func testChainedInt8ConvolutionsMatchTheQuantizedReference() throws {
        guard CPUInfo.current.hasVNNI, Int8Inference.native else { throw XCTSkip("this CPU has no native int8") }
        let cases: [([Int], Int, Int, Int, Int, Bool, Bool)] = [
            ([1, 64, 20, 18], 32, 1, 1, 0, true, false), ([1, 32, 21, 19], 32, 3, 2, 1, true, false),
            ([2, 32, 14, 14], 64, 1, 1, 0, true, true), ([1, 24, 13, 15], 40, 3, 1, 1, false, false),
        ]
        // u8 tensors are nhwc whatever the bf16 layout (oneDNN's int8 kernels take no other); so is the shortcut.
        try forEachSetting { layout, threads, mode in
            for (i, (xs, o, k, s, p, relu, hasResidual)) in cases.enumerated() {
                for signed in [false, true] {
                    // A power of two for s8: its input arrives in bf16, whose values often land on ties; x/sx then has no rounding of
                    // its own to differ from the reorder's x·(1/sx).
                    let c = xs[1], sx: Float = signed ? 1.0 / 64 : 1.0 / 100, so: Float = 1.0 / 40
                    let x = Tensor(values(xs.reduce(1, *), 0.37 + Double(i)).map { signed ? $0 * 2 : abs($0) * 2 }, shape: xs)
                    let w = Tensor(values(o * c * k * k, 0.11, 0.2), shape: [o, c, k, k])
                    let bias = Tensor(values(o, 0.5, 0.1), shape: [o])
                    // Some negative (the kernel's output scales carry the sign), one 0 in case 3 (its channel is the shift
                    // alone: the per-channel post-op form).
                    let scale = Tensor(values(o, 0.9).enumerated().map { j, v in
                        i == 3 && j == 5 ? 0 : (j % 3 == 2 ? -1 : 1) * (0.5 + v * v)
                    }, shape: [o])
                    let shift = Tensor(values(o, 1.3, 0.2), shape: [o])
                    let ho = (xs[2] + 2 * p - k) / s + 1, wo = (xs[3] + 2 * p - k) / s + 1
                    let residual = hasResidual ? Tensor(values(xs[0] * o * ho * wo, 0.23), shape: [xs[0], o, ho, wo]) : nil
                    let q = QuantizedConv.quantize(weight: w, inputScale: sx, inputSigned: signed)
                    let before = ConvChain.passes
                    // Signed: the input arrives in bf16 and is quantized to s8 on its way in.
                    func input() -> ChainTensor {
                        let y = signed ? ConvChain.int8Input(ConvChain.enter(x, type: .bf16, layout: .nhwc), q)
                            : ConvChain.enter(x, type: .u8, scale: sx)
                        XCTAssertEqual(y.type, signed ? .s8 : .u8)
                        XCTAssertEqual(y.scale, sx)
                        return y
                    }
                    // Reference: dequantized operands, float32 convolution and epilogue, the shortcut's values as given.
                    func reference(shortcut: [Float]?) throws -> Tensor {
                        let rx = Tensor((signed ? x.array.map(bf16Rounded) : x.array).map {
                            Float(min(signed ? 127 : 255, max(signed ? -128 : 0, ($0 / sx).rounded(.toNearestOrEven)))) * sx
                        }, shape: xs)
                        let rw = Tensor(q.dequantizedWeight(), shape: w.shape)
                        try MixedPrecision.select(.fp32)
                        var ref = conv2d(rx, rw, nil, stride: (s, s), padding: (p, p))
                        try MixedPrecision.select(.bf16)
                        let per = ho * wo
                        ref = Tensor((0..<ref.count).map { j in
                            let ch = j / per % o
                            return ref.data[j] * scale.data[ch] + bias.data[ch] * scale.data[ch] + shift.data[ch]
                        }, shape: ref.shape)
                        if let shortcut { ref = ref + Tensor(shortcut, shape: ref.shape) }
                        return relu ? ref.relu() : ref
                    }
                    func check(_ got: Tensor, _ ref: Tensor, _ output: ChainType, _ label: String) {
                        var off = 0, worst: Float = 0
                        for j in 0..<ref.count {
                            let r = output == .u8 ? Float(min(255, max(0, (ref.data[j] / so).rounded(.toNearestOrEven)))) * so
                                : output == .s8 ? Float(min(127, max(-128, (ref.data[j] / so).rounded(.toNearestOrEven)))) * so : ref.data[j]
                            // bf16: within one rounding step of the value.
                            let e = abs(got.data[j] - r) / (output == .bf16 ? abs(r) / 128 + 1e-3 : 1)
                            worst = max(worst, e)
                            if e > (output.quantized ? so * 1e-3 : output == .bf16 ? 0.5 : 1e-3 * (abs(r) + 1)) { off += 1 }
                        }
                        XCTAssertLessThanOrEqual(worst, output.quantized ? so * 1.001 : output == .bf16 ? 1.01 : 1e-2, label)
                        XCTAssertLessThanOrEqual(off, ref.count / 100 + 1, label)
                    }
                    let label = "\(layout) \(threads) threads (\(mode)) case \(i)\(signed ? " s8" : "")"
                    // s8: a calibrated downsample's output (no residual).
                    let outputs = [ChainType.u8, .f32, .bf16] + (residual == nil ? [.s8] : [])
                    for output in outputs {
                        let y = ConvChain.conv(input(), quantized: q, weight: w, bias: bias, scale: scale,
                                               shift: shift, stride: (s, s), padding: (p, p), relu: relu,
                                               residual: residual.map { ConvChain.enter($0, type: .bf16, layout: .nhwc) }, output: output,
                                               outputScale: so)
                        check(y.tensor(), try reference(shortcut: residual?.array.map(bf16Rounded)), output, "\(label) \(output)")
                    }
                    if let residual {
                        // A u8 shortcut (a ResNet block's own input) is summed from its u8 values into its own buffer.
                        let sr: Float = 1.0 / 60, values = residual.array.map { abs($0) }
                        let shortcut = ConvChain.enter(Tensor(values, shape: residual.shape), type: .u8, scale: sr)
                        let y = ConvChain.conv(input(), quantized: q, weight: w, bias: bias, scale: scale,
                                               shift: shift, stride: (s, s), padding: (p, p), relu: relu, residual: shortcut,
                                               output: .u8, outputScale: so)
                        XCTAssertEqual(y.scale, so, label)
                        // Written over the shortcut: its buffer now holds the output's u8 values.
                        XCTAssertEqual(shortcut.tensor().array.map { ($0 / sr).rounded() }, y.tensor().array.map { ($0 / so).rounded() },
                                       "\(label): the output is written over the u8 shortcut")
                        let stored = values.map { Float(min(255, ($0 / sr).rounded(.toNearestOrEven))) * sr }
                        check(y.tensor(), try reference(shortcut: stored), .u8, "\(label) u8 shortcut")
                        // An s8 shortcut (a calibrated downsample's output) is summed from its s8 values into its buffer.
                        let ss: Float = 1.0 / 70
                        let s8 = ConvChain.enter(residual, type: .s8, scale: ss)
                        let y8 = ConvChain.conv(input(), quantized: q, weight: w, bias: bias, scale: scale, shift: shift,
                                                stride: (s, s), padding: (p, p), relu: relu, residual: s8, output: .u8, outputScale: so)
                        XCTAssertEqual(y8.type, .u8, label)
                        let stored8 = residual.array.map { Float(min(127, max(-128, ($0 / ss).rounded(.toNearestOrEven)))) * ss }
                        check(y8.tensor(), try reference(shortcut: stored8), .u8, "\(label) s8 shortcut")
                    }
                    XCTAssertEqual(ConvChain.passes, before + outputs.count + (residual == nil ? 0 : 2), "\(label) did not run chained")
                }
            }
        }
    }
}
