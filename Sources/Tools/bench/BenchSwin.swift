import Backbones
import Engine
import Foundation

/// Swin backbones: eval-mode forward (no grad) at 224, batch 1, classification mode (logits), and the training
/// step ../shared/peer/bench_torch.py --train times (forward + backward of the summed logits, batch 2).
let swinCases: [BenchCase] = [
    swinCase("swin_tiny_fwd_224", arch: "swin_tiny"),
    swinCase("acmix_swin_tiny_fwd_224", arch: "acmix_swin_tiny"),
    swinCase("acmix_swin_tiny_dense_800x608_fwd", arch: "acmix_swin_tiny", dense: (800, 608)),
    BenchCase(name: "acmix_swin_tiny_train_224_b2") {
        EngineRandom.seed(0)
        let model = try SwinTransformer.make(arch: "acmix_swin_tiny").train()
        let x = Tensor((0..<(2 * 3 * 224 * 224)).map { Float($0 % 255) / 255 - 0.5 }, shape: [2, 3, 224, 224])
        return ({ model.zeroGrad(); model(x).sum().backward() }, { _ in [:] })
    },
    BenchCase(name: "acmix_swin_tiny_dense_train_224") {
        // Forward + backward of the dense backbone (drop path on), batch 1: the detector's backbone share.
        EngineRandom.seed(0)
        let model = try SwinTransformer.make(arch: "acmix_swin_tiny", mode: .dense).train()
        let x = Tensor((0..<(3 * 224 * 224)).map { Float($0 % 255) / 255 - 0.5 }, shape: [1, 3, 224, 224])
        return ({
            model.zeroGrad()
            model.features(x).reduce(Tensor(scalar: 0)) { $0 + $1.sum() }.backward()
        }, { _ in [:] })
    },
]

func swinCase(_ name: String, arch: String, dense: (Int, Int)? = nil) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let mode: SwinMode = dense == nil ? .classification(imageSize: 224) : .dense
        let model = try SwinTransformer.make(arch: arch, mode: mode).eval()
        benchModel = model
        let (h, w) = dense ?? (224, 224)
        let x = Tensor((0..<(3 * h * w)).map { Float($0 % 255) / 255 - 0.5 }, shape: [1, 3, h, w])
        let body: () -> Void = dense == nil
            ? { _ = withNoGrad { model(x) } }
            : { _ = withNoGrad { model.features(x) } }
        return (body, { _ in [:] })
    }
}

/// Kernels of one Swin-T stage-1 block at 224 (56×56 map, C 96, 3 heads), for comparing their shares.
let swinKernelCases: [BenchCase] = [
    BenchCase(name: "swin_s1_qkv_linear") {
        let x = Tensor(zeros: [1, 56, 56, 96], value: 0.1), w = Tensor(zeros: [288, 96], value: 0.01), b = Tensor(zeros: [288])
        return ({ _ = withNoGrad { linear(x, w, b) } }, { _ in [:] })
    },
    BenchCase(name: "swin_s1_window_attention") {
        let qkv = Tensor((0..<(56 * 56 * 288)).map { Float($0 % 17) / 17 }, shape: [1, 56, 56, 288])
        let table = Tensor(zeros: [169, 3]), idx = swinRelativePositionIndex(window: 7)
        let mask = swinShiftedWindowMask(height: 56, width: 56, window: 7, shift: 3)
        return ({ _ = withNoGrad { windowAttention(qkv, heads: 3, window: 7, scale: 0.17, biasTable: table, relativeIndex: idx, mask: mask) } }, { _ in [:] })
    },
    BenchCase(name: "swin_s1_acmix_conv_path") {
        let qkv = Tensor((0..<(56 * 56 * 288)).map { Float($0 % 17) / 17 }, shape: [1, 56, 56, 288])
        let fcW = Tensor(zeros: [9, 9, 1, 1], value: 0.1), fcB = Tensor(zeros: [9]), dep = Tensor(zeros: [96, 9, 3, 3], value: 0.1)
        return ({ _ = withNoGrad { acmixConvPath(qkv, heads: 3, fcWeight: fcW, fcBias: fcB, depWeight: dep) } }, { _ in [:] })
    },
    BenchCase(name: "swin_s1_mlp") {
        let x = Tensor(zeros: [1, 3136, 96], value: 0.1)
        let w1 = Tensor(zeros: [384, 96], value: 0.01), b1 = Tensor(zeros: [384]), w2 = Tensor(zeros: [96, 384], value: 0.01), b2 = Tensor(zeros: [96])
        return ({ _ = withNoGrad { linear(linear(x, w1, b1).gelu(), w2, b2) } }, { _ in [:] })
    },
    BenchCase(name: "swin_s1_layernorm") {
        let x = Tensor(zeros: [1, 3136, 96], value: 0.1), w = Tensor(zeros: [96], value: 1), b = Tensor(zeros: [96])
        return ({ _ = withNoGrad { layerNorm(x, weight: w, bias: b) } }, { _ in [:] })
    },
]

