import Backbones
import Engine
import Foundation

/// Swin backbones: eval-mode forward (no grad) at 224, batch 1, classification mode (logits).
let swinCases: [BenchCase] = [
    swinCase("swin_tiny_224_fwd", arch: "swin_tiny"),
    swinCase("acmix_swin_tiny_224_fwd", arch: "acmix_swin_tiny"),
    swinCase("acmix_swin_tiny_dense_800x608_fwd", arch: "acmix_swin_tiny", dense: (800, 608)),
]

func swinCase(_ name: String, arch: String, dense: (Int, Int)? = nil) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let mode: SwinMode = dense == nil ? .classification(imageSize: 224) : .dense
        let model = try SwinTransformer.make(arch: arch, mode: mode).eval()
        let (h, w) = dense ?? (224, 224)
        let x = Tensor((0..<(3 * h * w)).map { Float($0 % 255) / 255 - 0.5 }, shape: [1, 3, h, w])
        let body: () -> Void = dense == nil
            ? { _ = withNoGrad { model(x) } }
            : { _ = withNoGrad { model.features(x) } }
        return (body, { _ in [:] })
    }
}
