import Backbones
import Foundation
import Config
import Engine
import Heads
import NN
import Training

/// Mask R-CNN on ACmix-ResNet-50 as `configs/mask_rcnn/mask_rcnn_acmix_resnet50_fpn_1x_coco.json` builds it (mmdet's
/// defaults: 256-channel FPN P2–P6, RPN, 2×1024 box head, 4-conv mask head, 80 classes), through the registry.
func maskRCNN(arch: String = "acmix_resnet50", scoreThr: Double = 0.05) throws -> any Detector {
    EngineRandom.seed(0)
    let json = """
    {"type": "MaskRCNN", "backbone": {"arch": "\(arch)", "frozen_stages": 1, "norm_eval": true},
     "neck": {"type": "FPN", "in_channels": [256, 512, 1024, 2048], "out_channels": 256, "num_outs": 5},
     "rpn_head": {"type": "RPNHead"},
     "roi_head": {"type": "StandardRoIHead", "bbox_head": {"type": "Shared2FCBBoxHead", "num_classes": 80},
                  "mask_roi_extractor": {"roi_layer": {"output_size": 14}}, "mask_head": {"type": "FCNMaskHead", "num_classes": 80}},
     "test_cfg": {"rcnn": {"score_thr": \(scoreThr)}}}
    """
    return try Registries.detectors.build(Config(json: try JSON.parse(json)))
}

/// The model of a config in the source tree (`configs/...`), built through the registry with the engine seeded.
func configDetector(_ relativePath: String, overrides: [String] = []) throws -> any Detector {
    EngineRandom.seed(0)
    let cfg = try Config.load(path: packageRoot.appendingPathComponent(relativePath).path, overrides: overrides)
    return try Registries.detectors.build(cfg.section("model"))
}

/// One training iteration of `detector` on `n` random images of `size`² with random targets: forward, losses,
/// backward, an optimizer step (AdamW as the shapes configs, SGD otherwise).
func detectorTrainStep(_ detector: any Detector, n: Int, size: Int, classes: Int, masks: Bool, adamW: Bool = false)
    -> (body: () throws -> Void, extra: (Double) -> [String: Double]) {
    detector.train()
    var rng = SplitMix64(seed: 1)
    let images = Tensor((0..<(n * 3 * size * size)).map { _ in Float(rng.normal()) }, shape: [n, 3, size, size])
    let targets = randomTargets(n, size: size, classes: classes, masks: masks, rng: &rng)
    let groups = paramGroups(detector, weightDecay: adamW ? 0.05 : 1e-4, noDecayOn1D: true, noDecayKeys: [])
    let opt: any Optimizer = adamW ? AdamW(groups, lr: 2e-4) : SGD(groups, lr: 0.001)
    return ({
        opt.zeroGrad()
        let terms = detector.lossTerms(images, targets: targets)
        terms.dropFirst().reduce(terms[0].1) { $0 + $1.1 }.backward()   // (its last mark ends the backward pass)
        opt.step()
        if OpProfile.enabled { OpProfile.mark("optimizer (zero_grad is in the first op)") }
    }, { t in ["s_per_iter": t, "images_per_s": Double(n) / t] })
}

/// Random training targets: 3–9 boxes of 16–112 px per image, each with an elliptical mask.
func randomTargets(_ n: Int, size: Int, classes: Int, masks: Bool, rng: inout SplitMix64) -> [DetectionTarget] {
    (0..<n).map { _ -> DetectionTarget in
        let count = rng.randint(3, 10)
        var boxes: [Float] = [], labels: [Int] = [], bitmaps: [BitmapMask] = []
        for _ in 0..<count {
            let x = Float(rng.uniform(0, Double(size) - 112)), y = Float(rng.uniform(0, Double(size) - 112))
            let box = [x, y, x + Float(rng.uniform(16, 112)), y + Float(rng.uniform(16, 112))]
            boxes += box
            labels.append(rng.randint(0, classes))
            if masks {
                let (cx, cy, rx, ry) = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2)
                let data = (0..<(size * size)).map { i -> UInt8 in
                    let dx = (Float(i % size) + 0.5 - cx) / rx, dy = (Float(i / size) + 0.5 - cy) / ry
                    return dx * dx + dy * dy <= 1 ? 1 : 0
                }
                bitmaps.append(BitmapMask(width: size, height: size, data: data))
            }
        }
        return DetectionTarget(boxes: boxes, labels: labels, imgShape: (size, size), masks: masks ? bitmaps : nil)
    }
}

/// Detection cases: one training iteration (forward, losses on random targets, backward, an SGD step) at batch 2,
/// 512×512, of RetinaNet (acmix_resnet50 + FPN + RetinaHead, 80 classes) and of Mask R-CNN (the same backbone); and
/// Mask R-CNN inference on one 800×1333 image with score_thr 0, so that the full 100 detections get masks pasted.
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
    BenchCase(name: "cascade_mask_rcnn_r50_train_512_b2") {
        detectorTrainStep(try configDetector("configs/_base_/models/cascade_mask_rcnn_r50_fpn.json"), n: 2, size: 512, classes: 80, masks: true)
    },
    // det-train's default (the shapes RetinaNet at its batch of 4, 192×192): the step issue 25's thread scaling is about.
    BenchCase(name: "retinanet_shapes_train_b4") {
        detectorTrainStep(try configDetector("configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"), n: 4, size: 192, classes: 4,
                          masks: false, adamW: true)
    },
] + [("mask_rcnn", "configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json"),
      ("cascade_mask_rcnn", "configs/cascade_rcnn/cascade_mask_rcnn_acmix_resnet26_fpn_shapes.json")].map { name, path in
    // The built-in Mask R-CNN / Cascade Mask R-CNN demos' step (4 images of 192×192, AdamW).
    BenchCase(name: "\(name)_shapes_train_b4") {
        detectorTrainStep(try configDetector(path), n: 4, size: 192, classes: 4, masks: true, adamW: true)
    }
} + ["acmix_resnet50", "resnet50"].flatMap { arch -> [BenchCase] in
    let name = arch == "resnet50" ? "r50" : arch
    return [
    BenchCase(name: "mask_rcnn_\(name)_train_512_b2") {
        detectorTrainStep(try maskRCNN(arch: arch), n: 2, size: 512, classes: 80, masks: true)
    },
    BenchCase(name: "retinanet_\(name)_infer_800x1333") {
        EngineRandom.seed(0)
        let json = """
        {"type": "RetinaNet", "backbone": {"arch": "\(arch)", "frozen_stages": 1, "norm_eval": true},
         "neck": {"type": "FPN", "in_channels": [256, 512, 1024, 2048], "out_channels": 256, "start_level": 1,
                  "add_extra_convs": "on_input", "num_outs": 5},
         "bbox_head": {"type": "RetinaHead", "num_classes": 80, "in_channels": 256}}
        """
        let detector = try Registries.detectors.build(Config(json: try JSON.parse(json)))
        detector.eval()
        benchModel = detector
        var rng = SplitMix64(seed: 2)
        let images = Tensor((0..<(3 * 800 * 1344)).map { _ in Float(rng.normal()) }, shape: [1, 3, 800, 1344])
        return ({ _ = detector.predict(images, imgShapes: [(800, 1333)], scaleFactors: [[1, 1, 1, 1]], oriShapes: [(800, 1333)]) },
                { t in ["s_per_image": t] })
    },
    BenchCase(name: "mask_rcnn_\(name)_infer_800x1333") {
        let detector = try maskRCNN(arch: arch, scoreThr: 0)
        detector.eval()
        benchModel = detector
        var rng = SplitMix64(seed: 2)
        let images = Tensor((0..<(3 * 800 * 1344)).map { _ in Float(rng.normal()) }, shape: [1, 3, 800, 1344])
        return ({
            let d = detector.predict(images, imgShapes: [(800, 1333)], scaleFactors: [[1, 1, 1, 1]], oriShapes: [(800, 1333)])
            precondition(d[0].masks?.count == d[0].count, "masks for every detection")
        }, { t in ["s_per_image": t] })
    },
    ]
}
