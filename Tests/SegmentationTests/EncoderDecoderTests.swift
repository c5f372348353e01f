import Backbones
import Engine
import Heads
import NN
import XCTest

final class EncoderDecoderTests: XCTestCase {
    override func setUp() { EngineRandom.seed(11) }

    func tinyUperNet(classes: Int = 5) -> EncoderDecoder {
        EncoderDecoder.upernet(backbone: TinyBackbone(), numClasses: classes, channels: 16, auxChannels: 8)
    }

    func testSlideEqualsWholeWhenTheWindowCoversTheImage() {
        let model = tinyUperNet().eval()
        let x = randomTensor([2, 3, 48, 40], seed: 1)
        let whole = model.inference(x, mode: .whole)
        XCTAssertEqual(whole.shape, [2, 5, 48, 40])
        for crop in [(48, 40), (64, 64)] {
            let slide = model.inference(x, mode: .slide(crop: crop, stride: (32, 32)))
            XCTAssertEqual(slide.array, whole.array, "crop \(crop)")
        }
        // Rescaled to an original size and argmaxed, both modes agree too.
        XCTAssertEqual(model.predict(x, mode: .slide(crop: (64, 64), stride: (16, 16)), outputSize: (96, 80)),
                       model.predict(x, outputSize: (96, 80)))
    }

    /// With a pointwise model every window's logits equal the whole image's there, so overlapping windows (counted
    /// up to four times here) must average back to exactly the whole-image logits: this checks the count matrix and
    /// the last-window shift to the border.
    func testSlideAveragesOverlapsWithTheCountMatrix() {
        let model = EncoderDecoder(backbone: PointwiseBackbone(),
                                   decodeHead: FCNHead(inChannels: 4, channels: 6, numClasses: 3, inIndex: 1,
                                                       kernelSize: 1, norm: .none)).eval()
        let x = randomTensor([1, 3, 19, 13], seed: 2)
        let whole = model.inference(x).array
        let slide = model.inference(x, mode: .slide(crop: (8, 6), stride: (5, 4))).array
        XCTAssertEqual(whole.count, slide.count)
        for (a, b) in zip(whole, slide) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }

    /// Two overlapping windows on a real model: columns seen by one window take its logits, the shared columns the
    /// mean of both (mmseg's count-matrix division), then the whole map is rescaled to the requested size.
    func testSlideWithOverlapOnUperNet() {
        let model = tinyUperNet().eval()
        let x = randomTensor([1, 3, 32, 48], seed: 3)
        // Width 48, crop 32, stride 16: windows at x = 0..<32 and 16..<48.
        let slide = model.inference(x, mode: .slide(crop: (32, 32), stride: (16, 16)))
        let left = model.inference(x.slice(axis: 3, start: 0, end: 32)), right = model.inference(x.slice(axis: 3, start: 16, end: 48))
        for k in 0..<5 {
            for y in 0..<32 {
                for col in 0..<48 {
                    let l = col < 32 ? left.data[(k * 32 + y) * 32 + col] : nil
                    let r = col >= 16 ? right.data[(k * 32 + y) * 32 + col - 16] : nil
                    let expected = [l, r].compactMap { $0 }.reduce(0, +) / Float([l, r].compactMap { $0 }.count)
                    XCTAssertEqual(slide.data[(k * 32 + y) * 48 + col], expected, accuracy: 1e-5)
                }
            }
        }
        let rescaled = model.inference(x, mode: .slide(crop: (32, 32), stride: (16, 16)), outputSize: (64, 96))
        XCTAssertEqual(rescaled.array, slide.resizeBilinear(64, 96).array)
    }

    func testForwardTrainReportsMMSegTermsAndWeightsTheAuxiliaryLoss() {
        let model = tinyUperNet(classes: 4).train()
        let x = randomTensor([2, 3, 32, 32], seed: 4)
        var rng = SplitMix64(seed: 5)
        let y: [UInt8] = (0..<(2 * 32 * 32)).map { _ in rng.uniform() < 0.1 ? 255 : UInt8(rng.randint(0, 4)) }
        let out = model.forwardTrain(images: x, labels: y)
        XCTAssertEqual(out.terms.map(\.name), ["decode.loss_seg", "decode.acc_seg", "aux.loss_seg", "aux.acc_seg"])
        XCTAssertEqual(out.loss.item, out.term("decode.loss_seg")! + out.term("aux.loss_seg")!, accuracy: 1e-5)
        out.loss.backward()
        for (key, p) in model.trainableParameters() { XCTAssertNotNil(p.grad, "no gradient for \(key)") }

        // The auxiliary term is 0.4 × its cross-entropy: with weight 1 it is 2.5× larger on the same logits.
        model.eval()
        let a = model.forwardTrain(images: x, labels: y).term("aux.loss_seg")!
        model.auxiliary_head!.lossDecode.lossWeight = 1
        let b = model.forwardTrain(images: x, labels: y).term("aux.loss_seg")!
        XCTAssertEqual(b, a / 0.4, accuracy: 1e-4)
    }

    func testNeckIsAppliedAndKeyedAsNeck() {
        /// A stand-in neck (the real FPN is another module): 1×1 convs to a common width, keyed like FPN's lateral convs.
        final class Lateral: Module, Neck {
            var outChannels: Int { 8 }
            let lateral_convs: [ConvModule]
            init(_ inChannels: [Int], _ out: Int) { lateral_convs = inChannels.map { ConvModule($0, out, kernelSize: 1, norm: .none, relu: false) } }
            func callAsFunction(_ inputs: [Tensor]) -> [Tensor] { zip(lateral_convs, inputs).map { $0($1) } }
        }
        let backbone = TinyBackbone()
        let model = EncoderDecoder.semanticFPN(backbone: backbone, neck: Lateral(backbone.featureChannels, 8), numClasses: 3,
                                               neckChannels: 8, channels: 8).eval()
        XCTAssertTrue(model.stateDict().keys.contains("neck.lateral_convs.3.conv.weight"))
        XCTAssertTrue(model.stateDict().keys.contains("decode_head.scale_heads.3.4.conv.weight"))
        XCTAssertEqual(model.inference(randomTensor([1, 3, 64, 64], seed: 6)).shape, [1, 3, 64, 64])
    }

    func testUperNetOnResNet50ByArchName() throws {
        let model = try EncoderDecoder.upernet(arch: "resnet50", numClasses: 150)
        let keys = model.stateDict().keys
        XCTAssertTrue(keys.contains("backbone.layer4.2.conv3.weight"))
        XCTAssertFalse(keys.contains("backbone.fc.weight"))
        XCTAssertEqual(model.stateDict()["decode_head.lateral_convs.0.conv.weight"]?.shape, [512, 256, 1, 1])
        XCTAssertEqual(model.stateDict()["auxiliary_head.convs.0.conv.weight"]?.shape, [256, 1024, 3, 3])
        XCTAssertThrowsError(try EncoderDecoder.upernet(arch: "no_such_net", numClasses: 2))
    }

    /// An ACmix backbone cannot take inputs (or slide crops) whose stage maps are smaller than its attention window;
    /// the segmentor reports that before running.
    func testValidateRejectsInputsTooSmallForACmix() throws {
        let model = try EncoderDecoder.upernet(arch: "acmix_resnet26", numClasses: 3, channels: 16, auxChannels: 8)
        XCTAssertThrowsError(try model.validate(height: 32, width: 32)) { error in
            XCTAssertTrue("\(error)".contains("too small"), "\(error)")
        }
        XCTAssertNoThrow(try model.validate(height: 512, width: 512))
    }
}
