import Backbones
import Engine
import Heads
import NN

/// Segmentors at mmseg's ADE20K crop size (512×512, 150 classes) with random weights: eval forward at batch 1
/// (whole-image inference: backbone, UPerHead, upsampling of the logits to 512×512; the auxiliary head is not run).
/// The backbone is built by `BackboneRegistry` arch name, so the ACmix-Swin case appears as soon as that arch
/// is registered there.
let segmentationCases: [BenchCase] = [
    upernetForward("upernet_resnet50_fwd_512", arch: "resnet50"),
    upernetForward("upernet_swin_tiny_fwd_512", arch: "swin_tiny"),
    upernetForward("upernet_acmix_swin_tiny_fwd_512", arch: "acmix_swin_tiny"),
]

func upernetForward(_ name: String, arch: String, size: Int = 512, numClasses: Int = 150) -> BenchCase {
    BenchCase(name: name) {
        EngineRandom.seed(0)
        let model = try EncoderDecoder.upernet(arch: arch, numClasses: numClasses).eval()
        benchModel = model
        try model.validate(height: size, width: size)
        let x = Tensor(zeros: [1, 3, size, size], value: 0.5)
        return ({ _ = model.inference(x) }, { _ in [:] })
    }
}
