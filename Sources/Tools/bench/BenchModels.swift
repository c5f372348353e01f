import Backbones
import Engine
import NN

/// Whole backbones at 224×224 with random weights: eval forward at batch 1, and a training step (forward +
/// backward of the summed logits) at batch 2 — the same cases ../shared/peer/bench_torch.py times in PyTorch.
let modelCases: [BenchCase] = [
    resnetForward("acmix_resnet50_fwd_224", arch: "acmix_resnet50"),
    resnetForward("resnet50_fwd_224", arch: "resnet50"),
    resnetTrain("acmix_resnet50_train_224_b2", arch: "acmix_resnet50"),
]

func resnetForward(_ name: String, arch: String, size: Int = 224) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let model = try ResNet(arch: arch).eval()
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
