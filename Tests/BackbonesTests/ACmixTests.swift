import XCTest
import Engine
import NN
import Backbones

/// Parity with the authors' PyTorch ACmix module and ACmix-ResNet (../shared/reference/acmix).
final class ACmixTests: XCTestCase {
    func checkModule(_ file: String, inPlanes: Int, outPlanes: Int, stride: Int) throws {
        let f = try SafeTensors.read(path: "\(acmixReferenceDir)/\(file)")
        let m = ACmix(inPlanes: inPlanes, outPlanes: outPlanes, kernelAtt: 7, head: 4, kernelConv: 3, stride: stride)
        try m.load(stateDict: entries(f, prefix: "param."))
        let x = f.tensors["input"]!.copy()
        x.requiresGrad = true
        let y = m(x)
        assertMatches(y, f.tensors["output"], "output")
        (y * f.tensors["grad_output"]!).sum().backward()
        assertMatches(x.grad, f.tensors["grad.input"], "grad.input")
        let grads = entries(f, prefix: "grad.")
        for (key, p) in m.namedParameters() {
            if key == "conv_p.bias" {
                // Analytically zero: the bias shifts pe_q and pe_j alike, so it cancels in q·(k_j + pe_q − pe_j).
                // The reference holds float round-off (~5e-7); a relative test on noise is meaningless, so bound it
                // by the scale of the pe gradient it belongs to.
                let scale = grads["conv_p.weight"]!.array.map(abs).max()!
                XCTAssertLessThan(p.grad!.array.map(abs).max()!, 1e-4 * scale)
                XCTAssertLessThan(grads[key]!.array.map(abs).max()!, 1e-4 * scale)
                continue
            }
            assertMatches(p.grad, grads[key], "grad.\(key)")
        }
        XCTAssertEqual(Set(m.namedParameters().map(\.0)), Set(grads.keys).subtracting(["input"]))
    }

    func testModuleStride1() throws { try checkModule("acmix_module_s1.safetensors", inPlanes: 32, outPlanes: 32, stride: 1) }
    func testModuleStride2() throws { try checkModule("acmix_module_s2.safetensors", inPlanes: 32, outPlanes: 64, stride: 2) }

    func testACmixResNet1111LogitsAndFeatures() throws {
        let w = try SafeTensors.read(path: "\(acmixReferenceDir)/acmix_resnet_1111.weights.safetensors")
        let io = try SafeTensors.read(path: "\(acmixReferenceDir)/acmix_resnet_1111.io.safetensors")
        let model = ResNet(layers: [1, 1, 1, 1], acmix: ACmixSettings(), numClasses: 10)
        try model.load(stateDict: w.tensors)
        model.eval()
        let feats = withNoGrad { model.features(io.tensors["input"]!) }
        for i in 0..<4 { assertMatches(feats[i], io.tensors["features.layer\(i + 1)"], "layer\(i + 1)") }
        assertMatches(withNoGrad { model(io.tensors["input"]!) }, io.tensors["logits"], "logits")
    }

    func testFrozenStagesAndNormEval() throws {
        let m = ResNet(layers: [1, 1, 1, 1], acmix: ACmixSettings(), numClasses: nil, frozenStages: 1, normEval: true)
        XCTAssertFalse(m.conv1!.weight.requiresGrad)
        XCTAssertFalse(m.layer1[0].conv3.weight.requiresGrad)
        XCTAssertTrue(m.layer2[0].conv3.weight.requiresGrad)
        let before = m.layer2[0].bn1.running_mean.array
        m.train()
        _ = m.features(Tensor(zeros: [1, 3, 128, 128], value: 0.5))
        XCTAssertEqual(m.layer2[0].bn1.running_mean.array, before, "norm_eval keeps running statistics")
    }

    func testResNet50KeysMatchTorchvision() throws {
        let m = try ResNet(arch: "resnet50")
        let keys = Set(m.namedTensors().map(\.0))
        XCTAssertEqual(keys.count, 320)    // torchvision resnet50 state_dict: 161 params + 159 BN buffers
        XCTAssertTrue(keys.contains("layer4.2.bn3.running_var"))
        XCTAssertTrue(keys.contains("layer1.0.downsample.1.weight"))
        XCTAssertTrue(keys.contains("fc.bias"))
        let a = try ResNet(arch: "acmix_resnet50")
        XCTAssertTrue(Set(a.namedTensors().map(\.0)).contains("layer3.5.conv2.dep_conv.weight"))
    }
}
