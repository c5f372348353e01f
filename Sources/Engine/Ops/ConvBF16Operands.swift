import CDNNL
import Synchronization

/// A dense bf16 copy of float32 values, rounded to nearest even by oneDNN's reorder (the conversion a bf16 pass makes
/// of its own operands, so a pass on the copy computes what it computed on the float32 original), split over the
/// engine's threads.
final class BF16Copy: @unchecked Sendable {
    let bits: UnsafeMutableRawPointer
    let count: Int
    /// Copies made so far (`MixedPrecision.operandCopies`).
    static let made = Atomic<Int>(0)

    /// nil when oneDNN cannot convert (no engine, or a reorder failed).
    init?(_ x: UnsafePointer<Float>, count: Int) {
        guard OneDNN.engine != nil else { return nil }
        BF16Copy.made.add(1, ordering: .relaxed)
        bits = BlockAllocator.allocate(bytes: max(count, 1) * 2)
        self.count = count
        let parts = count >= 1 << 15 ? Threads.count : 1
        let src = UnsafeMutableRawPointer(mutating: x), dst = bits
        let ok = Threads.all(parts) { i in
            let a = count * i / parts, b = count * (i + 1) / parts
            return b == a || BF16Copy.convert(src + a * 4, dst + a * 2, count: b - a)
        }
        if !ok { BlockAllocator.free(bits, bytes: max(count, 1) * 2); return nil }
    }

    deinit { BlockAllocator.free(bits, bytes: max(count, 1) * 2) }

    private static let reorders = PlanCache<Int, DNNLPrimitive>()

    /// float32 → bf16 of `count` values on this thread.
    private static func convert(_ src: UnsafeMutableRawPointer, _ dst: UnsafeMutableRawPointer, count: Int) -> Bool {
        guard let engine = OneDNN.engine,
              let from = OneDNN.plain([count], strides: [1]), let to = OneDNN.plain([count], strides: [1], type: dnnl_bf16),
              let reorder = reorders.get(count, make: { DNNLPrimitive.reorder(from: from, to: to) }) else { return false }
        OneDNN.singleThreaded()
        let exec = DNNLExecution(engine: engine)
        guard let s = exec.memory(from, src), let d = exec.memory(to, dst) else { return false }
        return OneDNN.withStream { stream in
            exec.run(reorder, [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_FROM), memory: s), dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_TO), memory: d)],
                     on: stream, scratchpad: reorder.scratchpadBytes)
        } ?? false
    }
}

extension MixedPrecision {
    /// bf16 copies of amp convolution operands made so far (`DenseBF16Operands`; tests check that passes share them).
    public static var operandCopies: Int { BF16Copy.made.load(ordering: .relaxed) }
}

/// The bf16 operands of an amp training convolution whose passes run dense (`bf16Blocked`: unpadded 1×1), converted
/// once in the forward and kept for the backward: the input feeds the weight gradient, the weight the input gradient
/// (and the output gradient, converted once, both). Converting in every pass, the amp step of ACmix-ResNet-50 made
/// about 400 activation and 200 weight conversions (Zen 4, ONEDNN_VERBOSE).
final class DenseBF16Operands {
    /// The input (kept when the weight needs its gradient) and the weight (kept when the input needs its gradient).
    let x: BF16Copy?
    let w: BF16Copy?

    /// Runs the forward y = conv(x, w) + bias, with the ReLU when `relu`, on bf16 copies of x and w; nil where the
    /// dense bf16 path does not apply (not an amp training pass with native bf16, or not an unpadded 1×1 convolution)
    /// or oneDNN fails, and the caller runs its usual forward.
    init?(_ g: Conv2dGeometry, x: Tensor, weight: Tensor, bias: Tensor?, y: Tensor, relu: Bool) {
        guard MixedPrecision.active && MixedPrecision.trainingPass && MixedPrecision.native && g.takesBF16
                && !g.bf16Blocked(.forward), let xb = BF16Copy(x.data, count: x.count),
              let wb = BF16Copy(weight.data, count: weight.count),
              oneDNNConv(.forward, g, blocked: false, x: xb.bits, w: wb.bits, y: y.data, bias: bias?.data,
                         epilogue: ConvEpilogue(relu: relu), bf16: true, bf16Inputs: true) else { return nil }
        MixedPrecision.count(native: true)
        self.x = weight.requiresGrad ? xb : nil
        self.w = x.requiresGrad ? wb : nil
    }

    /// The input and weight gradients from gy, as `conv2dGradients`; nil when oneDNN fails (the caller then runs the
    /// usual backward).
    func gradients(_ g: Conv2dGeometry, _ gy: Tensor, input: Bool, weight: Bool) -> (Tensor?, Tensor?)? {
        guard MixedPrecision.native, !input || w != nil, !weight || x != nil,
              let gyb = BF16Copy(gy.data, count: gy.count) else { return nil }
        let gx = input ? Tensor(uninitialized: [g.n, g.c, g.h, g.w]) : nil
        let gw = weight ? Tensor(uninitialized: [g.o, g.cg, g.kh, g.kw]) : nil
        let dataDone = gx.map { oneDNNConv(.backwardData, g, blocked: false, x: $0.data, w: w!.bits, y: gyb.bits, bf16: true, bf16Inputs: true) } ?? true
        let weightDone = gw.map { oneDNNConv(.backwardWeights, g, blocked: false, x: x!.bits, w: $0.data, y: gyb.bits, bf16: true, bf16Inputs: true) } ?? true
        guard dataDone && weightDone else { return nil }
        MixedPrecision.count(native: true)
        return (gx, gw)
    }
}
