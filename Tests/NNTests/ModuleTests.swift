import XCTest
import Engine
import NN

/// A torchvision-style block, to check that keys come out as PyTorch's state_dict keys.
final class Block: Module {
    let conv1 = Conv2d(4, 8, kernelSize: 3, padding: 1, bias: false)
    let bn1 = BatchNorm2d(8)
    let downsample = Sequential([Conv2d(4, 8, kernelSize: 1, bias: false), BatchNorm2d(8)])
    let layers: [Module] = [Linear(2, 3), Linear(3, 2)]
    let head: Linear? = nil
}

final class ModuleTests: XCTestCase {
    func testStateDictKeysMatchPyTorch() {
        let keys = Set(Block().namedTensors().map(\.0))
        XCTAssertEqual(keys, [
            "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
            "downsample.0.weight", "downsample.1.weight", "downsample.1.bias", "downsample.1.running_mean",
            "downsample.1.running_var", "downsample.1.num_batches_tracked",
            "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"])
        let params = Set(Block().namedParameters().map(\.0))
        XCTAssertFalse(params.contains("bn1.running_mean"))
        XCTAssertTrue(params.contains("bn1.weight"))
    }

    func testTrainEvalRecursive() {
        let b = Block()
        b.eval()
        XCTAssertFalse(b.downsample.layers[1].training)
        b.train()
        XCTAssertTrue(b.downsample.layers[1].training)
    }

    func testLoadStrictReportsEveryKindOfMismatch() throws {
        let a = Block(), b = Block()
        var sd = a.stateDict()
        try b.load(stateDict: sd)
        XCTAssertEqual(b.conv1.weight.array, a.conv1.weight.array)

        sd["extra.weight"] = Tensor(zeros: [1])
        sd["conv1.weight"] = Tensor(zeros: [8, 4, 1, 1])
        sd.removeValue(forKey: "bn1.bias")
        sd.removeValue(forKey: "bn1.num_batches_tracked")   // derived: never reported
        XCTAssertThrowsError(try b.load(stateDict: sd)) { e in
            guard case let .checkpoint(m)? = e as? KitError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("missing keys (1): bn1.bias"), m)
            XCTAssertTrue(m.contains("unexpected keys (1): extra.weight"), m)
            XCTAssertTrue(m.contains("shape mismatches (1): conv1.weight"), m)
            XCTAssertFalse(m.contains("\n"), "one line")
        }
        let report = try b.load(stateDict: sd, strict: false)
        XCTAssertFalse(report.isClean)
        XCTAssertTrue(report.loaded.contains("bn1.weight"))
    }

    /// A NaN or infinite weight is refused with its key, strict or not, and nothing is assigned.
    func testLoadRefusesNonFiniteWeights() throws {
        let a = Block(), b = Block()
        for bad in [Float.nan, .infinity] {
            var sd = a.stateDict()
            let w = sd["conv1.weight"]!.copy()
            w.data[3] = bad
            sd["conv1.weight"] = w
            let other = { (b.downsample.layers[0] as! Conv2d).weight.array }, before = other()
            for strict in [true, false] {
                XCTAssertThrowsError(try b.load(stateDict: sd, strict: strict, source: "w.safetensors")) { e in
                    guard case let .checkpoint(m)? = e as? KitError else { return XCTFail("\(e)") }
                    XCTAssertTrue(m.hasPrefix("w.safetensors: conv1.weight holds 1 NaN or infinite value of"), m)
                }
            }
            XCTAssertEqual(other(), before)
        }
    }

    func testLoadWithBackbonePrefix() throws {
        let a = Block(), b = Block()
        let prefixed = Dictionary(uniqueKeysWithValues: a.stateDict().map { ("backbone.\($0.key)", $0.value) })
        try b.load(stateDict: prefixed, stripPrefix: "backbone.")
        XCTAssertEqual(b.bn1.running_var.array, a.bn1.running_var.array)
    }

    func testFrozenBatchNormUsesRunningStats() {
        let bn = BatchNorm2d(2)
        bn.frozen = true
        bn.running_mean.data[0] = 1
        let x = Tensor([1, 2, 3, 4, 5, 6, 7, 8], shape: [1, 2, 2, 2])
        let y = bn(x)
        XCTAssertEqual(y.data[0], 0, accuracy: 1e-4)           // (1 − 1)/sqrt(1 + eps)
        XCTAssertEqual(bn.running_mean.data[0], 1)              // untouched
    }
}
