import Config
import Engine
import Foundation
import NN

/// A neck: backbone levels in (finest first), pyramid levels out.
public protocol Neck: Module {
    var outChannels: Int { get }
    /// How many maps `callAsFunction` returns, when fixed by the config (heads check their per-level settings by it).
    var levelCount: Int? { get }
    func callAsFunction(_ inputs: [Tensor]) -> [Tensor]
    /// Whether `chained` runs on chained bf16 activations (`ConvChain`) without leaving the chain.
    var chains: Bool { get }
    /// The neck on chained activations; without `chains`, through float32 NCHW tensors and back.
    func chained(_ inputs: [ChainTensor]) -> [ChainTensor]
}

extension Neck {
    public var levelCount: Int? { nil }
    public var chains: Bool { false }
    public func chained(_ inputs: [ChainTensor]) -> [ChainTensor] { self(inputs.map { $0.tensor() }).map { ConvChain.enter($0) } }
}

/// What a neck's builder gets from its parent: the backbone's channels per level.
public struct NeckContext {
    public var inChannels: [Int]
    public init(inChannels: [Int]) { self.inChannels = inChannels }
}

/// mmdet `FPN`: 1×1 lateral convs on inputs start_level..end, top-down nearest upsampling (to the finer map's size)
/// and addition, 3×3 output convs, then extra levels up to `numOuts`: stride-2 3×3 convs on the last input
/// ('on_input'), lateral ('on_lateral') or output ('on_output'), with ReLU before all but the first extra conv when
/// `reluBeforeExtraConvs`; or, with no extra convs, stride-2 max-pooling (kernel 1).
///
/// Keys: lateral_convs.i.conv.{weight,bias}, fpn_convs.i.conv.{weight,bias}. Convs use mmdet's xavier-uniform init.
public final class FPN: Module, Neck {
    public enum ExtraConvs: String { case none, onInput = "on_input", onLateral = "on_lateral", onOutput = "on_output" }

    public let lateral_convs: [ConvModule]
    public let fpn_convs: [ConvModule]
    public let inChannels: [Int], outChannels: Int, numOuts: Int, startLevel: Int, endLevel: Int
    public var levelCount: Int? { numOuts }
    public let extraConvs: ExtraConvs
    public let reluBeforeExtraConvs: Bool

    /// `endLevel` −1 means the last input.
    public init(inChannels: [Int], outChannels: Int, numOuts: Int, startLevel: Int = 0, endLevel: Int = -1,
                addExtraConvs: ExtraConvs = .none, reluBeforeExtraConvs: Bool = false) {
        self.inChannels = inChannels; self.outChannels = outChannels; self.numOuts = numOuts
        self.startLevel = startLevel
        let backboneEnd = endLevel == -1 ? inChannels.count : endLevel + 1
        self.endLevel = backboneEnd
        extraConvs = addExtraConvs
        self.reluBeforeExtraConvs = reluBeforeExtraConvs
        precondition(startLevel >= 0 && startLevel < backboneEnd && backboneEnd <= inChannels.count, "FPN: bad start/end level")
        precondition(numOuts >= backboneEnd - startLevel, "FPN: num_outs below the number of used inputs")
        var lat: [ConvModule] = [], outs: [ConvModule] = []
        for i in startLevel..<backboneEnd {
            lat.append(ConvModule(inChannels[i], outChannels, kernelSize: 1, norm: .none, relu: false))
            outs.append(ConvModule(outChannels, outChannels, kernelSize: 3, padding: 1, norm: .none, relu: false))
        }
        let extraLevels = numOuts - backboneEnd + startLevel
        if addExtraConvs != .none {
            for i in 0..<max(extraLevels, 0) {
                let c = i == 0 && addExtraConvs == .onInput ? inChannels[backboneEnd - 1] : outChannels
                outs.append(ConvModule(c, outChannels, kernelSize: 3, stride: 2, padding: 1, norm: .none, relu: false))
            }
        }
        lateral_convs = lat
        fpn_convs = outs
        super.init()
        for m in lat + outs { xavierUniform(m.conv) }
    }

    /// Inputs: the backbone's feature maps (finest first). Outputs: `numOuts` maps of `outChannels`.
    public func callAsFunction(_ inputs: [Tensor]) -> [Tensor] {
        precondition(inputs.count == inChannels.count, "FPN expects \(inChannels.count) inputs, got \(inputs.count)")
        var laterals = lateral_convs.enumerated().map { $0.element(inputs[$0.offset + startLevel]) }
        let used = laterals.count
        for i in stride(from: used - 1, to: 0, by: -1) {
            let prev = laterals[i - 1]
            laterals[i - 1] = prev + laterals[i].resizeNearest(prev.shape[2], prev.shape[3])
        }
        var outs = (0..<used).map { fpn_convs[$0](laterals[$0]) }
        if numOuts > used {
            if extraConvs == .none {
                for _ in used..<numOuts { outs.append(outs.last!.maxPool2d(kernel: 1, stride: 2)) }
            } else {
                outs.append(fpn_convs[used](extraSource(inputs: inputs, laterals: laterals, outs: outs)))
                for i in (used + 1)..<max(numOuts, used + 1) {
                    outs.append(fpn_convs[i](reluBeforeExtraConvs ? outs.last!.relu() : outs.last!))
                }
            }
        }
        return outs
    }

    /// What the first extra convolution reads (`add_extra_convs`): the last used input, lateral or output, in float32
    /// or chained form alike.
    func extraSource<T>(inputs: [T], laterals: [T], outs: [T]) -> T {
        switch extraConvs {
        case .onInput: return inputs[endLevel - 1]
        case .onLateral: return laterals[lateral_convs.count - 1]
        default: return outs[lateral_convs.count - 1]
        }
    }

    /// Its convolutions are plain: it always chains.
    public var chains: Bool { true }

    /// The same on chained activations (bf16 inference): each lateral convolution sums the upsampled coarser lateral
    /// in its kernel.
    public func chained(_ inputs: [ChainTensor]) -> [ChainTensor] {
        precondition(inputs.count == inChannels.count, "FPN expects \(inChannels.count) inputs, got \(inputs.count)")
        let used = lateral_convs.count
        var laterals = [ChainTensor?](repeating: nil, count: used)
        for i in stride(from: used - 1, through: 0, by: -1) {
            let x = inputs[i + startLevel]
            let above = i + 1 < used ? ConvChain.resizeNearest(laterals[i + 1]!, x.shape[2], x.shape[3]) : nil
            laterals[i] = lateral_convs[i].conv(x, residual: above)
        }
        let lats = laterals.map { $0! }
        var outs = (0..<used).map { fpn_convs[$0].conv(lats[$0]) }
        if numOuts > used {
            if extraConvs == .none {
                for _ in used..<numOuts { outs.append(ConvChain.maxPool(outs.last!, kernel: 1, stride: 2, padding: 0)) }
            } else {
                outs.append(fpn_convs[used].conv(extraSource(inputs: inputs, laterals: lats, outs: outs)))
                for i in (used + 1)..<max(numOuts, used + 1) {
                    // The ReLU before an extra convolution, on a map 1/64 of the input's size or smaller.
                    let x = reluBeforeExtraConvs ? ConvChain.enter(outs.last!.tensor().relu()) : outs.last!
                    outs.append(fpn_convs[i].conv(x))
                }
            }
        }
        return outs
    }
}

/// xavier_init(distribution='uniform'), bias 0: U(±sqrt(6 / (fan_in + fan_out))).
func xavierUniform(_ c: Conv2d) {
    let s = c.weight.shape, rf = s[2] * s[3]
    let bound = (6 / Float(s[1] * rf + s[0] * rf)).squareRoot()
    c.weight.assign(Init.uniform(s, bound: bound))
    c.bias?.fill(0)
}

/// normal_init(std, bias): N(0, std²) weights, constant bias.
func normalInit(_ c: Conv2d, std: Float = 0.01, bias: Float = 0) {
    c.weight.assign(Init.normal(c.weight.shape, std: std))
    c.bias?.fill(bias)
}

extension FPN {
    static func register(in r: Registry<any Neck, NeckContext>) {
        r.register("FPN", fields: [
            .init("in_channels", .optional(.array(.positiveInt))), .init("out_channels", .positiveInt, required: true),
            .init("num_outs", .positiveInt, required: true), .init("start_level", .nonNegativeInt, default: 0),
            .init("end_level", .intRange(-1...Int.max), default: -1),
            .init("add_extra_convs", .anyOf([.bool, .oneOf(["on_input", "on_lateral", "on_output"])]), default: false),
            .init("relu_before_extra_convs", .bool, default: false),
        ]) { c, context in
            let channels = context.inChannels
            if c.has("in_channels"), try c.ints("in_channels") != channels {
                throw c.fail("in_channels", "\(try c.ints("in_channels")) but the backbone gives \(channels)")
            }
            var extra = ExtraConvs.none
            switch c["add_extra_convs"] {
            case .bool(true)?: extra = .onInput   // mmdet: True means 'on_input'
            case let .string(s)?: extra = ExtraConvs(rawValue: s) ?? .none
            default: break
            }
            let start = try c.int("start_level"), numOuts = try c.int("num_outs"), end = try c.int("end_level")
            let used = (end == -1 ? channels.count : end + 1) - start
            guard start < channels.count && end < channels.count && used >= 1 && numOuts >= used else {
                throw c.fail("", "start_level \(start), end_level \(end), num_outs \(numOuts) do not fit \(channels.count) inputs")
            }
            return FPN(inChannels: channels, outChannels: try c.int("out_channels"), numOuts: numOuts, startLevel: start,
                       endLevel: end, addExtraConvs: extra, reluBeforeExtraConvs: try c.bool("relu_before_extra_convs"))
        }
    }
}
