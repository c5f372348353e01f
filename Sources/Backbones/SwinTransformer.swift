import Engine
import NN

/// How a Swin backbone is run.
public enum SwinMode: Equatable {
    /// The authors' fixed-size classifier: inputs must be imageSize×imageSize; a stage whose resolution is at
    /// most the window uses window = resolution and no shift; final `norm`, average pool, `head` → logits.
    case classification(imageSize: Int)
    /// Any input size (mmdetection / Swin-det conventions): the image is padded to a patch multiple, every
    /// block pads to window multiples with masks for the padded size, and the four stage outputs go through
    /// their own LayerNorms `norm0`…`norm3` and come back NCHW.
    case dense
}

/// Architecture hyper-parameters.
public struct SwinConfig: Equatable {
    public var embedDim = 96
    public var depths = [2, 2, 6, 2]
    public var numHeads = [3, 6, 12, 24]
    public var windowSize = 7
    public var patchSize = 4
    public var mlpRatio: Float = 4
    public var qkvBias = true
    public var acmix = false
    public var numClasses = 1000
    /// Stochastic depth: block i of n gets rate·i/(n−1) (torch.linspace(0, rate, n)).
    public var dropPathRate: Float = 0.2
    public var mode: SwinMode = .classification(imageSize: 224)
    /// Dense mode: the stages whose outputs `features` returns (mmdet's `out_indices`), each with its norm `norm<i>`.
    public var outIndices: [Int]? = nil

    /// `outIndices`, or every stage.
    public var outputStages: [Int] { outIndices ?? Array(0..<depths.count) }

    public init(embedDim: Int = 96, depths: [Int] = [2, 2, 6, 2], numHeads: [Int] = [3, 6, 12, 24],
                windowSize: Int = 7, patchSize: Int = 4, mlpRatio: Float = 4, qkvBias: Bool = true,
                acmix: Bool = false, numClasses: Int = 1000, dropPathRate: Float = 0.2,
                mode: SwinMode = .classification(imageSize: 224)) {
        self.embedDim = embedDim; self.depths = depths; self.numHeads = numHeads; self.windowSize = windowSize
        self.patchSize = patchSize; self.mlpRatio = mlpRatio; self.qkvBias = qkvBias; self.acmix = acmix
        self.numClasses = numClasses; self.dropPathRate = dropPathRate; self.mode = mode
    }

    /// Channels of stage i's output.
    public func stageDim(_ i: Int) -> Int { embedDim << i }
}


/// Swin Transformer (Liu et al. 2021) and its ACmix variant (Pan et al. 2022), with the authors' state-dict
/// keys: `patch_embed.*`, `layers.i.blocks.j.*`, `layers.i.downsample.*`, and `norm`, `head` (classification)
/// or `norm0`…`norm3` (dense, one per stage output).
public final class SwinTransformer: Module {
    public let patch_embed: PatchEmbed
    public let layers: [BasicLayer]
    /// Classification: the final LayerNorm and the classifier (nil when numClasses is 0: logits are the
    /// pooled features).
    public let norm: LayerNorm?
    public let head: Linear?
    /// Dense: one LayerNorm per stage output, keyed `norm0`, `norm1`, ...
    public let outNorms: [LayerNorm]
    public let config: SwinConfig

    public init(_ config: SwinConfig) {
        let stages = config.depths.count
        precondition(stages > 0 && config.numHeads.count == stages,
                     "SwinTransformer: \(config.depths.count) depths but \(config.numHeads.count) head counts")
        self.config = config
        patch_embed = PatchEmbed(patchSize: config.patchSize, embedDim: config.embedDim)
        var gridSize: Int? = nil
        if case .classification(let size) = config.mode {
            precondition(size % config.patchSize == 0, "SwinTransformer: image size \(size) is not a multiple of patch \(config.patchSize)")
            gridSize = size / config.patchSize
        }
        let total = config.depths.reduce(0, +)
        let rates: [Float] = (0..<total).map { total > 1 ? config.dropPathRate * Float($0) / Float(total - 1) : 0 }
        var layers: [BasicLayer] = []
        var start = 0
        for i in 0..<stages {
            let res = gridSize.map { $0 >> i }
            if let res, res > config.windowSize {
                precondition(res % config.windowSize == 0,
                             "SwinTransformer: stage \(i + 1) resolution \(res) is not a multiple of window \(config.windowSize) (classification mode needs it; use dense mode)")
            }
            layers.append(BasicLayer(dim: config.stageDim(i), depth: config.depths[i], heads: config.numHeads[i],
                                     window: config.windowSize, mlpRatio: config.mlpRatio, qkvBias: config.qkvBias,
                                     acmix: config.acmix, dropPath: Array(rates[start..<(start + config.depths[i])]),
                                     downsample: i < stages - 1, fixedResolution: res))
            start += config.depths[i]
        }
        self.layers = layers
        let last = config.stageDim(stages - 1)
        if config.mode == .dense {
            norm = nil; head = nil
            precondition(config.outputStages.allSatisfy { (0..<stages).contains($0) }, "SwinTransformer: out_indices outside the stages")
            outNorms = config.outputStages.map { LayerNorm(config.stageDim($0)) }
        } else {
            norm = LayerNorm(last)
            if config.numClasses > 0 {
                let h = Linear(last, config.numClasses)
                swinInitLinear(h)
                head = h
            } else {
                head = nil
            }
            outNorms = []
        }
    }

    /// Explicit keys: the per-output norms are `norm0`…, not `outNorms.0`….
    public override func children() -> [(String, Module)] {
        var out: [(String, Module)] = [("patch_embed", patch_embed)]
        out += layers.enumerated().map { ("layers.\($0.offset)", $0.element) }
        if let norm { out.append(("norm", norm)) }
        if let head { out.append(("head", head)) }
        out += zip(config.outputStages, outNorms).map { ("norm\($0)", $1) }
        return out
    }

    /// Throws when `shape` (B, 3, H, W) cannot go through this model (classification needs the fixed size).
    public func validate(inputShape shape: [Int]) throws {
        guard shape.count == 4, shape[1] == 3 else { throw KitError.model( "Swin expects (B, 3, H, W), got \(shape)") }
        if case .classification(let size) = config.mode, shape[2] != size || shape[3] != size {
            let g = size / config.patchSize
            throw KitError.model(
                "Swin classification mode is built for \(size)x\(size) inputs (patch grid \(g)x\(g)); got \(shape[2])x\(shape[3]). Use mode .dense for other sizes.")
        }
    }

    /// Stage outputs as tokens with their grids: the last block of each stage, before merging, without any
    /// extra norm; plus the final tokens.
    public func stageTokens(_ x: Tensor) -> [(tokens: Tensor, height: Int, width: Int)] {
        do { try validate(inputShape: x.shape) } catch { preconditionFailure("\(error)") }
        var (t, h, w) = patch_embed(x)
        var outs: [(Tensor, Int, Int)] = []
        for layer in layers {
            let r = layer(t, height: h, width: w)
            outs.append((r.out, h, w))
            (t, h, w) = (r.next, r.height, r.width)
        }
        return outs
    }

    /// Stage outputs stage1…stageN as NCHW (B, C_i, H_i, W_i): in classification mode the raw block outputs,
    /// in dense mode after `norm_i`.
    public func features(_ x: Tensor) -> [Tensor] {
        let stages = stageTokens(x)
        guard config.mode == .dense else { return stages.map { Self.toNCHW($0.tokens, height: $0.height, width: $0.width) } }
        return zip(config.outputStages, outNorms).map { i, norm in
            Self.toNCHW(norm(stages[i].tokens), height: stages[i].height, width: stages[i].width)
        }
    }

    /// Stage outputs as NCHW without the dense per-output norms (equal to classification features when the
    /// two modes see the same maps).
    public func rawFeatures(_ x: Tensor) -> [Tensor] {
        stageTokens(x).map { Self.toNCHW($0.tokens, height: $0.height, width: $0.width) }
    }

    /// Classification logits (B, numClasses): final norm, mean over tokens, head.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard let norm else { preconditionFailure("SwinTransformer: dense mode has no classifier; use features(_:)") }
        let last = stageTokens(x).last!.tokens
        let pooled = norm(last).mean(axes: [1])
        return head.map { $0(pooled) } ?? pooled
    }

    /// (B, H·W, C) → (B, C, H, W).
    public static func toNCHW(_ t: Tensor, height h: Int, width w: Int) -> Tensor {
        let (b, c) = (t.shape[0], t.shape[2])
        return t.transpose(1, 2).reshape([b, c, h, w])
    }

    /// Named architectures: swin_tiny/small/base and acmix_swin_tiny/small/base. Drop-path defaults follow the
    /// authors' configs (0.2 / 0.3 / 0.5).
    public static func make(arch: String, mode: SwinMode = .classification(imageSize: 224), numClasses: Int = 1000,
                            dropPathRate: Float? = nil, outIndices: [Int]? = nil) throws -> SwinTransformer {
        let acmix = arch.hasPrefix("acmix_")
        let base = acmix ? String(arch.dropFirst("acmix_".count)) : arch
        var cfg: SwinConfig
        switch base {
        case "swin_tiny": cfg = SwinConfig(embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24], dropPathRate: 0.2)
        case "swin_small": cfg = SwinConfig(embedDim: 96, depths: [2, 2, 18, 2], numHeads: [3, 6, 12, 24], dropPathRate: 0.3)
        case "swin_base": cfg = SwinConfig(embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32], dropPathRate: 0.5)
        default:
            throw KitError.model( "unknown Swin architecture '\(arch)'; known: swin_tiny, swin_small, swin_base, acmix_swin_tiny, acmix_swin_small, acmix_swin_base")
        }
        cfg.acmix = acmix
        cfg.numClasses = numClasses
        cfg.mode = mode
        if let dropPathRate { cfg.dropPathRate = dropPathRate }
        cfg.outIndices = outIndices
        return SwinTransformer(cfg)
    }
}
