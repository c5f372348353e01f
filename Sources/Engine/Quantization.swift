import CDNNL
import Foundation

/// int8 inference (`--precision int8`): post-training static quantization of convolutions and linear layers (as 1×1
/// convolutions over their rows), as OpenVINO's NNCF and
/// PyTorch's fbgemm backend run it. A quantized convolution rounds its input to int8 with one scale for the tensor
/// (u8 when calibration never saw a negative input, s8 otherwise; zero point 0), multiplies it by int8 weights with
/// one symmetric scale per output channel, sums in int32, and converts back to float32 in its epilogue:
///
///     y = act((Σ q_x·q_w) · (s_x·s_w[o]·bn_scale[o]) + bias[o]·bn_scale[o] + bn_shift[o] [+ residual])
///
/// Per-channel symmetric quantization of a weight commutes with the BatchNorm's per-channel scale (round(w·a / (a·m)) =
/// round(w / m) for a > 0, and the sign flips through for a < 0), so quantizing the convolution's own weight and
/// keeping the BatchNorm in the float epilogue gives the numbers of quantizing the folded weight.
///
/// Natively the products run in oneDNN's int8 kernels (AVX512-VNNI / AVX-VNNI, AMX-INT8 where present); emulated
/// (`ACMIX_INT8_EMULATION=1`, or a geometry oneDNN has no kernel for) the dequantized operands q·s run through the
/// float32 kernels: the same numbers up to float rounding, on any CPU. Which convolutions are quantized, and their
/// input scales, come from calibration (Tasks' `Int8Calibration`); every other op stays float32, or bf16 between
/// chained int8 convolutions (`ConvChain.int8Mixed`).
public final class QuantizedConv: @unchecked Sendable {
    /// Weight [O, C/groups, kh, kw] (a linear layer's [O, C]) as int8 in −127...127.
    public let qweight: UnsafeMutableBufferPointer<Int8>
    /// Per output channel: weight ≈ qweight · weightScale.
    public let weightScale: [Float]
    /// Input ≈ q · inputScale, q in 0...255 (unsigned) or −127...127.
    public let inputScale: Float
    public let inputSigned: Bool
    /// Output ≈ q · outputScale, q in −127...127, where calibration recorded the output's range: a ResNet block's
    /// downsample then writes s8, which the block's last convolution sums in place (a bf16 shortcut took oneDNN's older
    /// 1×1 kernel, 1.1–1.8× slower on Zen 4). Set once, before the model runs.
    public var outputScale: Float?
    /// `qweight` in the kernels' layouts, reordered on first use.
    let packed = PackedWeights()

    public init(qweight: [Int8], weightScale: [Float], inputScale: Float, inputSigned: Bool) {
        precondition(!weightScale.isEmpty && qweight.count % weightScale.count == 0, "one weight scale per output channel")
        precondition(inputScale > 0 && inputScale.isFinite, "input scale must be positive and finite")
        self.qweight = .allocate(capacity: qweight.count)
        _ = self.qweight.initialize(from: qweight)
        self.weightScale = weightScale; self.inputScale = inputScale; self.inputSigned = inputSigned
    }

    deinit { qweight.deallocate() }

    /// Per-output-channel symmetric quantization of a float weight [O, ...]: scale max|w|/127 per channel (1 for an
    /// all-zero channel), q = round(w / scale) to nearest even.
    public static func quantize(weight: Tensor, inputScale: Float, inputSigned: Bool) -> QuantizedConv {
        let o = weight.shape[0], per = weight.count / max(o, 1)
        var q = [Int8](repeating: 0, count: weight.count), scales = [Float](repeating: 1, count: o)
        for ch in 0..<o {
            let row = weight.data + ch * per
            var m: Float = 0
            for i in 0..<per where row[i].isFinite { m = max(m, abs(row[i])) }
            let s: Float = m > 0 ? m / 127 : 1
            scales[ch] = s
            for i in 0..<per { q[ch * per + i] = quantized(row[i], 1 / s, signed: true) }
        }
        return QuantizedConv(qweight: q, weightScale: scales,
                             inputScale: inputScale, inputSigned: inputSigned)
    }

    /// The float weight the int8 one stands for (q · scale), for emulation and for checks.
    public func dequantizedWeight() -> [Float] {
        let per = qweight.count / weightScale.count
        return (0..<qweight.count).map { Float(qweight[$0]) * weightScale[$0 / per] }
    }
}

/// `v · inverseScale` rounded to nearest even and clamped to the type's range (0...255 or −127...127), as a byte of
/// that type; NaN becomes 0.
@inline(__always)
func quantized(_ v: Float, _ inverseScale: Float, signed: Bool) -> Int8 {
    let r = (v * inverseScale).rounded(.toNearestOrEven)
    if signed {
        let c = r.isNaN ? 0 : r < -127 ? -127 : r > 127 ? 127 : r
        return Int8(c)
    }
    let c = r.isNaN ? 0 : r < 0 ? 0 : r > 255 ? 255 : r
    return Int8(bitPattern: UInt8(c))
}

/// A model's quantized convolutions and linear layers, found by their weight tensor (`weight.data`). It holds the
/// weight tensors, so a key never outlives the model it was made for.
public final class Int8Model: @unchecked Sendable {
    /// The quantized convolutions: parameter name (without ".weight"), the float weight it replaces, its int8 form.
    public let entries: [(name: String, weight: Tensor, conv: QuantizedConv)]
    private let layers: [UnsafeMutablePointer<Float>: QuantizedConv]

    public init(_ entries: [(name: String, weight: Tensor, conv: QuantizedConv)]) {
        for e in entries {
            precondition(e.weight.count == e.conv.qweight.count && e.weight.shape[0] == e.conv.weightScale.count,
                         "\(e.name): quantized weight of another shape")
        }
        self.entries = entries
        layers = Dictionary(entries.map { ($0.weight.data, $0.conv) }, uniquingKeysWith: { a, _ in a })
    }

    public var count: Int { layers.count }

    /// The quantized form of the convolution (or linear layer) whose weight is `weight`, when it has one.
    public func layer(weight: Tensor) -> QuantizedConv? {
        guard let q = layers[weight.data], q.qweight.count == weight.count, q.weightScale.count == weight.shape[0] else { return nil }
        return q
    }

    /// The quantized form of the convolution with weight `w` and geometry `g`, when it has one of that shape.
    func layer(for w: UnsafeMutableRawPointer, _ g: Conv2dGeometry) -> QuantizedConv? {
        guard let q = layers[w.assumingMemoryBound(to: Float.self)], q.weightScale.count == g.o,
              q.qweight.count == g.o * g.cg * g.kh * g.kw else { return nil }
        return q
    }
}

/// Sees every convolution and linear forward pass that records no gradient (calibration's statistics and output
/// comparisons; a linear layer's input is [rows, C], its output [rows, O]).
public protocol ConvObserver: AnyObject {
    /// `weight` identifies the convolution (its weight tensor's data); input [N, C, H, W] and output [N, O, Ho, Wo] as
    /// flat buffers.
    func observe(weight: UnsafeMutablePointer<Float>, groups: Int, input: UnsafeBufferPointer<Float>, output: UnsafeBufferPointer<Float>)
}

public enum Int8Inference {
    /// The quantized convolutions of the model being run (set around its calls, as `MixedPrecision.inference` is).
    nonisolated(unsafe) public static var model: Int8Model?
    /// Calibration's observer, when one is installed.
    nonisolated(unsafe) public static var observer: ConvObserver?

    /// `ACMIX_INT8_EMULATION=1`: int8 numerics through the float32 kernels, on any CPU.
    nonisolated(unsafe) public static var emulated: Bool = ProcessInfo.processInfo.environment["ACMIX_INT8_EMULATION"] == "1"

    /// Whether int8 runs natively: the CPU has VNNI (int8 dot products without the 16-bit intermediate saturation of
    /// older AVX2 / AVX-512 int8 instructions), emulation is not asked for, and the kernels passed `nativeSelfCheck`.
    public static var native: Bool { CPUInfo.current.hasVNNI && OneDNN.engine != nil && !emulated && nativeVerified }

    /// Checked once, on first native use; a mismatch turns native int8 off for the process with a warning.
    public static let nativeVerified = OneDNN.nativeCheckPasses("int8", has: CPUInfo.current.hasVNNI) { nativeSelfCheck() }

    /// The first mismatch between oneDNN's int8 convolution and the emulated numbers (u8 and s8 sources, 3×3 and 1×1,
    /// with bias, BatchNorm affine, residual and ReLU), or nil. `weightLimit` bounds the test weights' magnitude: CPUs
    /// without VNNI sum pairs of u8·s8 products in 16 bits and oneDNN halves s8-source weights there, so only even
    /// weights up to 63 are exact on them (tests on such CPUs check the plumbing that way).
    public static func nativeSelfCheck(weightLimit: Int = 127) -> String? {
        func values(_ n: Int, _ f: Double) -> [Float] { (0..<n).map { Float(sin(Double($0) * f)) } }
        // 3×3 on two images (split by images over the threads), 1×1 on one larger image (split by output channels).
        var cases: [(Bool, Conv2dGeometry)] = []
        for signed in [false, true] {
            cases += [(signed, Conv2dGeometry([2, 32, 10, 10], [48, 32, 3, 3], padding: (1, 1))), (signed, Conv2dGeometry([1, 64, 24, 24], [64, 64, 1, 1])),
                      (signed, Conv2dGeometry([1, 8, 9, 7], [8, 8, 3, 3], padding: (1, 1))),
                      (signed, Conv2dGeometry([1, 8, 9, 7], [16, 8, 3, 3], stride: (2, 2), padding: (1, 1))),
                      (signed, Conv2dGeometry([2, 16, 9, 7], [32, 16, 1, 1], stride: (2, 2))),
                      (signed, Conv2dGeometry([1, 24, 9, 7], [36, 24, 3, 3], padding: (1, 1))),
                      (signed, Conv2dGeometry([1, 4, 9, 7], [12, 4, 1, 1])),
                      (signed, Conv2dGeometry([1, 32, 16, 20], [32, 32, 3, 3], padding: (1, 1)))]
        }
        for (signed, g) in cases {
            let k = g.kh
            var x = values(g.n * g.c * g.h * g.w, 0.37).map { signed ? $0 : abs($0) }
            // Below the full range, even weights: without VNNI oneDNN also halves the weights of s8-source kernels.
            let wq = (0..<(g.o * g.c * k * k)).map { i -> Int8 in
                let v = Int(sin(Double(i) * 0.11) * Double(weightLimit))
                return Int8(weightLimit < 127 ? v / 2 * 2 : v)
            }
            let q = QuantizedConv(qweight: wq, weightScale: (0..<g.o).map { 0.01 + Float($0) * 0.001 }, inputScale: 1.0 / 120,
                                  inputSigned: signed)
            var bias = values(g.o, 0.5), scale = values(g.o, 0.9).map { $0 + 1.5 }, shift = values(g.o, 0.3)
            var residual = values(g.n * g.o * g.ho * g.wo, 0.05)
            var y = [Float](repeating: 0, count: residual.count), ref = y
            var ran = false
            x.withUnsafeMutableBufferPointer { xp in bias.withUnsafeMutableBufferPointer { bp in scale.withUnsafeMutableBufferPointer { sp in
            shift.withUnsafeMutableBufferPointer { tp in residual.withUnsafeMutableBufferPointer { rp in
                let e = ConvEpilogue(scale: sp.baseAddress, shift: tp.baseAddress, residual: rp.baseAddress, relu: true)
                y.withUnsafeMutableBufferPointer { yp in
                    ran = int8ConvForward(g, xp.baseAddress!, q, bp.baseAddress, yp.baseAddress!, epilogue: e, native: true) }
                ref.withUnsafeMutableBufferPointer { yp in
                    _ = int8ConvForward(g, xp.baseAddress!, q, bp.baseAddress, yp.baseAddress!, epilogue: e, native: false) }
            } } } } }
            guard ran else { continue }   // no kernel for it: that geometry is emulated
            let worst = zip(y, ref).map { abs($0 - $1) }.max()! / max(ref.map(abs).max()!, 1e-6)
            if worst > 1e-4 { return "\(signed ? "s8" : "u8") \(k)x\(k) convolution \(g) off by \(worst)" }
        }
        return nil
    }

    /// int8 passes so far, natively and emulated.
    nonisolated(unsafe) public static var nativeCalls = 0, emulatedCalls = 0
}

/// An int8 forward convolution (see `QuantizedConv`): x [N, C, H, W] float32 is quantized with the layer's input scale,
/// y [N, O, Ho, Wo] written in float32 with the bias and epilogue applied. `native`: through oneDNN's int8 kernels;
/// true when they ran, false when the emulated path did.
@discardableResult
func int8ConvForward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ q: QuantizedConv,
                     _ bias: UnsafeMutablePointer<Float>?, _ y: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue,
                     native: Bool) -> Bool {
    let n = g.n * g.c * g.h * g.w
    let xq = BlockAllocator.allocate(bytes: max(n, 1))
    defer { BlockAllocator.free(xq, bytes: max(n, 1)) }
    let inverse = 1 / q.inputScale, signed = q.inputSigned
    parallelChunks(n) { a, b in
        let out = xq.assumingMemoryBound(to: Int8.self)
        for i in a..<b { out[i] = quantized(x[i], inverse, signed: signed) }
    }
    if native {
        // y = acc·(s_x·s_w·bn_scale) + (bias·bn_scale + bn_shift): the dequantisation and the bias are the scale and
        // shift post-ops; the residual (which oneDNN only takes before the affine) and what follows it come after.
        var scale = [Float](repeating: 0, count: g.o), shift = [Float](repeating: 0, count: g.o)
        for o in 0..<g.o {
            let a = epilogue.scale?[o] ?? 1
            scale[o] = q.inputScale * q.weightScale[o] * a
            shift[o] = (bias?[o] ?? 0) * a + (epilogue.shift?[o] ?? 0)
        }
        let ran = scale.withUnsafeMutableBufferPointer { sp in shift.withUnsafeMutableBufferPointer { tp in
            let fused = ConvEpilogue(scale: sp.baseAddress, shift: tp.baseAddress, relu: epilogue.residual == nil && epilogue.relu)
            let after = epilogue.residual == nil ? ConvEpilogue() : ConvEpilogue(residual: epilogue.residual, relu: epilogue.relu)
            return oneDNNConv(.forward, g, blocked: true, x: xq, w: UnsafeMutableRawPointer(q.qweight.baseAddress!), y: y,
                              epilogue: fused, then: after, int8: signed ? .s8 : .u8, packed: q.packed)
        } }
        if ran {
            Int8Inference.nativeCalls += 1
            return true
        }
    }
    // Emulated: the dequantized operands through the float32 kernels (never Winograd, which rounds differently).
    let xf = Tensor(uninitialized: [n]), wf = Tensor(q.dequantizedWeight(), shape: [q.qweight.count])
    parallelChunks(n) { a, b in
        let src = UnsafeRawPointer(xq)
        if signed { for i in a..<b { xf.data[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) * q.inputScale } }
        else { for i in a..<b { xf.data[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) * q.inputScale } }
    }
    convForward32(g, xf.data, wf.data, bias, y, epilogue: epilogue, inference: false)
    Int8Inference.emulatedCalls += 1
    return false
}
