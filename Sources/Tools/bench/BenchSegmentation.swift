import Backbones
import Config
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
    // seg-train's default step: the shapes UPerNet on 4 crops of 128×128 (5 classes, a few pixels ignored), AdamW.
    BenchCase(name: "upernet_shapes_train_b4") {
        EngineRandom.seed(0)
        let cfg = try Config.load(path: packageRoot.appendingPathComponent("configs/upernet/upernet_acmix_resnet26_shapes.json").path)
        let model = try Registries.segmentors.build(cfg.section("model"))
        model.train()
        benchModel = model
        let (n, size) = (4, 128)
        var rng = SplitMix64(seed: 1)
        let images = Tensor((0..<(n * 3 * size * size)).map { _ in Float(rng.normal()) }, shape: [n, 3, size, size])
        let labels = (0..<(n * size * size)).map { _ in rng.randint(0, 100) < 2 ? Int32(255) : Int32(rng.randint(0, 5)) }
        let opt = AdamW(paramGroups(model, weightDecay: 0.01, noDecayOn1D: false, noDecayKeys: []), lr: 1e-4)
        return ({
            opt.zeroGrad()
            model.forwardTrain(images: images, labels: labels).loss.backward()
            clipGradNorm(opt.groups.flatMap { $0.params.map(\.1) }, maxNorm: 35)
            opt.step()
            if OpProfile.enabled { OpProfile.mark("optimizer (zero_grad is in the first op)") }
        }, { t in ["s_per_iter": t, "images_per_s": Double(n) / t] })
    },
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
