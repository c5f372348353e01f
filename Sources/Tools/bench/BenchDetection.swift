import Backbones
import Engine
import Heads
import NN
import Training

/// Detection cases: one RetinaNet (acmix_resnet50 + FPN + RetinaHead, 80 classes) training iteration — forward,
/// focal + L1 losses on random targets, backward and an SGD step — at batch 2, 512x512.
let detectionCases: [BenchCase] = [
    BenchCase(name: "retinanet_acmix_resnet50_train_512_b2") {
        EngineRandom.seed(0)
        let backbone = try ResNet(arch: "acmix_resnet50", numClasses: nil, frozenStages: 1, normEval: true)
        let neck = FPN(inChannels: backbone.featureChannels, outChannels: 256, numOuts: 5, startLevel: 1,
                       addExtraConvs: .onInput, reluBeforeExtraConvs: true)
        let detector = SingleStageDetector(backbone: backbone, neck: neck, head: RetinaHead(numClasses: 80))
        detector.train()
        var rng = SplitMix64(seed: 1)
        let images = Tensor((0..<(2 * 3 * 512 * 512)).map { _ in Float(rng.normal()) }, shape: [2, 3, 512, 512])
        let targets = (0..<2).map { _ -> DetectionTarget in
            let n = rng.randint(3, 10)
            var boxes: [Float] = [], labels: [Int] = []
            for _ in 0..<n {
                let x = Float(rng.uniform(0, 400)), y = Float(rng.uniform(0, 400))
                boxes += [x, y, x + Float(rng.uniform(16, 112)), y + Float(rng.uniform(16, 112))]
                labels.append(rng.randint(0, 80))
            }
            return DetectionTarget(boxes: boxes, labels: labels, imgShape: (512, 512))
        }
        let opt = SGD(paramGroups(detector, weightDecay: 1e-4, noDecayOn1D: true, noDecayKeys: []), lr: 0.001)
        return ({
            opt.zeroGrad()
            let terms = detector.lossTerms(images, targets: targets)
            (terms[0].1 + terms[1].1).backward()
            opt.step()
        }, { t in ["s_per_iter": t, "images_per_s": 2 / t] })
    },
]
