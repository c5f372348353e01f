import Backbones
import Engine
import Heads
import NN
import XCTest

/// Key names and shapes against mmseg's (mmcv ConvModule `conv`/`bn`/`gn`, nn.ModuleList/Sequential indices) so
/// mmseg checkpoints load with `load(stateDict:)` and ours load in mmseg.
final class StateDictKeyTests: XCTestCase {
    override func setUp() { EngineRandom.seed(1) }

    func testConvModuleKeysFollowMMCV() {
        XCTAssertEqual(Set(ConvModule(3, 8, kernelSize: 3, norm: .bn).stateDict().keys),
                       ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"])
        XCTAssertEqual(Set(ConvModule(3, 8, kernelSize: 3, norm: .groupNorm(groups: 4)).stateDict().keys),
                       ["conv.weight", "gn.weight", "gn.bias"])
        // bias='auto': a conv without norm keeps its bias.
        XCTAssertEqual(Set(ConvModule(3, 8, kernelSize: 1, norm: .none).stateDict().keys), ["conv.weight", "conv.bias"])
    }

    /// mmseg configs/_base_/models/upernet_r50.py with ADE20K's 150 classes: decode_head and auxiliary_head keys.
    func testUperNetHeadKeysAndShapesMatchMMSeg() {
        let model = EncoderDecoder(backbone: TinyBackbone(channels: [256, 512, 1024, 2048].map { $0 / 32 }),
                                   decodeHead: UPerHead(inChannels: [256, 512, 1024, 2048], channels: 512, numClasses: 150),
                                   auxiliaryHead: FCNHead(inChannels: 1024, channels: 256, numClasses: 150, inIndex: 2))
        let sd = model.stateDict()
        var expected: [String] = []
        for i in 0..<4 { expected += convBNKeys("decode_head.psp_modules.\(i).1") }
        expected += convBNKeys("decode_head.bottleneck")
        for i in 0..<3 { expected += convBNKeys("decode_head.lateral_convs.\(i)") + convBNKeys("decode_head.fpn_convs.\(i)") }
        expected += convBNKeys("decode_head.fpn_bottleneck") + ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
        expected += convBNKeys("auxiliary_head.convs.0") + ["auxiliary_head.conv_seg.weight", "auxiliary_head.conv_seg.bias"]
        let heads = Set(sd.keys.filter { !$0.hasPrefix("backbone.") })
        XCTAssertEqual(heads, Set(expected))
        XCTAssertTrue(sd.keys.contains("backbone.stem.conv.weight"))

        let shapes: [String: [Int]] = [
            "decode_head.psp_modules.0.1.conv.weight": [512, 2048, 1, 1],
            "decode_head.psp_modules.3.1.bn.running_var": [512],
            "decode_head.bottleneck.conv.weight": [512, 2048 + 4 * 512, 3, 3],
            "decode_head.lateral_convs.0.conv.weight": [512, 256, 1, 1],
            "decode_head.lateral_convs.2.conv.weight": [512, 1024, 1, 1],
            "decode_head.fpn_convs.1.conv.weight": [512, 512, 3, 3],
            "decode_head.fpn_bottleneck.conv.weight": [512, 4 * 512, 3, 3],
            "decode_head.conv_seg.weight": [150, 512, 1, 1],
            "decode_head.conv_seg.bias": [150],
            "auxiliary_head.convs.0.conv.weight": [256, 1024, 3, 3],
            "auxiliary_head.conv_seg.weight": [150, 256, 1, 1],
        ]
        for (k, s) in shapes { XCTAssertEqual(sd[k]?.shape, s, k) }
        // num_batches_tracked and running stats are buffers, not parameters.
        XCTAssertFalse(model.namedParameters().contains { $0.0.hasSuffix("running_mean") })
    }

    /// mmseg configs/_base_/models/fpn_r50.py: FPNHead(channels 128, strides 4..32); Upsample layers hold indices.
    func testSemanticFPNHeadKeysMatchMMSeg() {
        let bn = SemanticFPNHead(channels: 128, numClasses: 150).stateDict()
        var expected: [String] = ["conv_seg.weight", "conv_seg.bias"]
        for (i, convs) in [[0], [0], [0, 2], [0, 2, 4]].enumerated() {
            for j in convs { expected += convBNKeys("scale_heads.\(i).\(j)") }
        }
        XCTAssertEqual(Set(bn.keys), Set(expected))
        XCTAssertEqual(bn["scale_heads.3.4.conv.weight"]?.shape, [128, 128, 3, 3])
        XCTAssertEqual(bn["scale_heads.0.0.conv.weight"]?.shape, [128, 256, 3, 3])

        let gn = SemanticFPNHead(channels: 128, numClasses: 19, norm: .gn32).stateDict()
        XCTAssertEqual(gn["scale_heads.2.2.gn.weight"]?.shape, [128])
        XCTAssertNil(gn["scale_heads.2.2.bn.weight"])
        XCTAssertNil(gn["scale_heads.2.2.conv.bias"])
    }

    func testStateDictRoundTripsThroughLoad() throws {
        let a = EncoderDecoder.upernet(backbone: TinyBackbone(), numClasses: 4, channels: 16, auxChannels: 8)
        let b = EncoderDecoder.upernet(backbone: TinyBackbone(), numClasses: 4, channels: 16, auxChannels: 8)
        let report = try b.load(stateDict: a.stateDict())
        XCTAssertTrue(report.isClean)
        let x = randomTensor([1, 3, 32, 32], seed: 5)
        a.eval(); b.eval()
        XCTAssertEqual(a.inference(x).array, b.inference(x).array)
    }
}
