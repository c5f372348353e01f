import Backbones
import Engine
import Foundation
import Heads
import NN
import XCTest

/// Parity with mmseg's heads, loss and inference as PyTorch computes them: Reference/make_reference.py restates
/// mmseg/mmcv in plain torch with mmseg's attribute names and wrote Reference/seg_heads.safetensors. Loading its
/// state dicts strictly checks every key and shape; outputs must agree to 1e-4 of their largest magnitude.
final class ReferenceTests: XCTestCase {
    static let file: SafeTensors.File? = {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Reference")
        return try? SafeTensors.read(path: dir.appendingPathComponent("seg_heads.safetensors").path)
    }()

    func reference() throws -> SafeTensors.File { try XCTUnwrap(Self.file, "Reference/seg_heads.safetensors is missing") }

    /// Entries under `prefix.`, with the prefix removed (one module's state dict).
    func stateDict(_ f: SafeTensors.File, _ prefix: String) -> [String: Tensor] {
        let p = prefix + "."
        return Dictionary(uniqueKeysWithValues: f.tensors.filter { $0.key.hasPrefix(p) }
            .map { (String($0.key.dropFirst(p.count)), $0.value) })
    }

    func levels(_ f: SafeTensors.File, _ name: String) -> [Tensor] { (0..<4).map { f.tensors["\(name).\($0)"]! } }

    func assertClose(_ a: Tensor, _ b: Tensor?, _ name: String, tol: Float = 1e-4, file: StaticString = #filePath, line: UInt = #line) {
        guard let b else { return XCTFail("\(name): no reference", file: file, line: line) }
        XCTAssertEqual(a.shape, b.shape, name, file: file, line: line)
        guard a.count == b.count else { return }
        var scale: Float = 0, err: Float = 0
        for i in 0..<b.count { scale = max(scale, abs(b.data[i])); err = max(err, abs(a.data[i] - b.data[i])) }
        XCTAssertLessThanOrEqual(err, tol * max(scale, 1e-12), "\(name): max error \(err), largest magnitude \(scale)", file: file, line: line)
    }

    func testUPerHeadMatchesMMSeg() throws {
        let f = try reference()
        let head = UPerHead(inChannels: [8, 16, 32, 64], channels: 16, numClasses: 5)
        try head.load(stateDict: stateDict(f, "uper"))
        head.eval()
        assertClose(withNoGrad { head(levels(f, "levels")) }, f.tensors["out.uper"], "UPerHead")
    }

    func testFCNHeadMatchesMMSeg() throws {
        let f = try reference()
        let head = FCNHead(inChannels: 32, channels: 8, numClasses: 5, inIndex: 2)
        try head.load(stateDict: stateDict(f, "fcn"))
        head.eval()
        assertClose(withNoGrad { head(levels(f, "levels")) }, f.tensors["out.fcn"], "FCNHead")
    }

    func testSemanticFPNHeadMatchesMMSegWithBNAndGN() throws {
        let f = try reference()
        for (name, norm) in [("fpn_bn", ConvNorm.bn), ("fpn_gn", .groupNorm(groups: 4))] {
            let head = SemanticFPNHead(inChannels: [8, 8, 8, 8], channels: 8, numClasses: 5, norm: norm)
            try head.load(stateDict: stateDict(f, name))
            head.eval()
            assertClose(withNoGrad { head(levels(f, "fpn_levels")) }, f.tensors["out.\(name)"], name)
        }
    }

    func testLossAndGradientMatchMMSeg() throws {
        let f = try reference()
        let logits = f.tensors["loss.logits"]!.copy()
        logits.requiresGrad = true
        let label = f.tensors["loss.label"]!
        let loss = SegmentationLoss(classWeight: f.tensors["loss.class_weight"]!.array)
        let value = loss(logits, labels: label.array.map { Int32($0) }, labelSize: (label.shape[1], label.shape[2]))
        value.backward()
        assertClose(value.reshape([1]), f.tensors["loss.value"], "loss", tol: 1e-5)
        assertClose(logits.grad!, f.tensors["loss.grad"], "d loss / d logits")
    }

    func testWholeAndSlideInferenceMatchMMSeg() throws {
        let f = try reference()
        let model = EncoderDecoder(backbone: TinyBackbone(),
                                   decodeHead: UPerHead(inChannels: [8, 16, 32, 64], channels: 16, numClasses: 5),
                                   auxiliaryHead: FCNHead(inChannels: 32, channels: 8, numClasses: 5, inIndex: 2))
        try model.load(stateDict: stateDict(f, "model"))
        model.eval()
        let img = f.tensors["infer.img"]!
        assertClose(model.inference(img, outputSize: (50, 70)), f.tensors["infer.whole"], "whole inference")
        assertClose(model.inference(img, mode: .slide(crop: (32, 32), stride: (20, 20)), outputSize: (50, 70)),
                    f.tensors["infer.slide"], "slide inference")
    }
}
