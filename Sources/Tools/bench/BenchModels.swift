import Backbones
import Engine
import NN

/// Whole backbones at 224×224 with random weights: eval forward at batch 1, and a training step (forward +
/// backward of the summed logits) at batch 2 — the same cases ../shared/peer/bench_torch.py times in PyTorch.
let modelCases: [BenchCase] = [
    resnetForward("acmix_resnet50_fwd_224", arch: "acmix_resnet50"),
    resnetForward("resnet50_fwd_224", arch: "resnet50"),
    resnetTrain("acmix_resnet50_train_224_b2", arch: "acmix_resnet50"),
    resnetTrain("resnet50_train_224_b2", arch: "resnet50"),
    acmixModule("acmix_module_64_56", planes: 64, side: 56),
    acmixModule("acmix_module_256_14", planes: 256, side: 14),
]

/// The ACmix module alone (ResNet layer1 and layer3 shapes), with the time split between its two paths.
func acmixModule(_ name: String, planes: Int, side: Int) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let m = ACmix(inPlanes: planes, outPlanes: planes)
        let x = Tensor(zeros: [1, planes, side, side], value: 0.5)
        let qkv = Tensor(zeros: [1, 3 * planes, side, side], value: 0.1)
        let pe = Tensor(zeros: [planes / 4, side * side], value: 0.1)
        let f = Tensor(zeros: [1, 9 * planes / 4, side, side], value: 0.1)
        let att = medianSeconds(runs: 5) {
            _ = withNoGrad { acmixLocalAttention(qkv, pe, heads: 4, height: side, width: side, kernel: 7, stride: 1, scale: 0.25) }
        }
        let dep = medianSeconds(runs: 5) { _ = withNoGrad { m.dep_conv(f) } }
        return ({ _ = withNoGrad { m(x) } }, { t in ["attention_ms": att * 1000, "dep_conv_ms": dep * 1000, "share_attention": att / t] })
    }
}

func resnetForward(_ name: String, arch: String, size: Int = 224) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let model = try ResNet(arch: arch).eval()
        benchModel = model
        let x = Tensor(zeros: [1, 3, size, size], value: 0.5)
        return ({ _ = withNoGrad { model(x) } }, { _ in [:] })
    }
}

func resnetTrain(_ name: String, arch: String, size: Int = 224) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let model = try ResNet(arch: arch).train()
        let x = Tensor(zeros: [2, 3, size, size], value: 0.5)
        return ({ model.zeroGrad(); model(x).sum().backward() }, { _ in [:] })
    }
}
