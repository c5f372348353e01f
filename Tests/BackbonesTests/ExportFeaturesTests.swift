import Foundation
import XCTest
import Engine
import NN
import Backbones
import Data
import TestSupport

/// The `export-features` contract, run as a process on the release build next to the tests.
final class ExportFeaturesTests: XCTestCase {
    func run(_ args: [String]) throws -> (Int32, String) {
        let r = try ToolRunner.run("export-features", args)
        return (r.status, r.stderr)
    }

    func tmp(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("export-features-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    func testFeaturesAndLogitsMatchTheLibrary() throws {
        EngineRandom.seed(7)
        let model = try ResNet(arch: "acmix_resnet26", numClasses: 10)
        // Non-trivial BN statistics so eval mode is exercised.
        for (k, t) in model.namedTensors() where k.hasSuffix("running_var") { t.fill(0.8) }
        let weights = tmp("w.safetensors"), input = tmp("x.safetensors"), output = tmp("out.safetensors")
        try SafeTensors.write(model.namedTensors().map { ("backbone.\($0.0)", $0.1) }, to: weights)
        var rng = SplitMix64(seed: 3)
        let x = Tensor((0..<(2 * 3 * 128 * 96)).map { _ in Float(rng.uniform(-2, 2)) }, shape: [2, 3, 128, 96])
        try SafeTensors.write([("pixels", x)], to: input)

        let (rc, err) = try run(["--arch", "acmix_resnet26", "--weights", weights, "--input", input, "--input-key", "pixels",
                                 "--output", output, "--logits"])
        XCTAssertEqual(rc, 0, err)
        let out = try SafeTensors.read(path: output)
        model.eval()
        let expected = withNoGrad { model.features(x) }
        for (i, name) in ["c2", "c3", "c4", "c5"].enumerated() {
            XCTAssertEqual(out.tensors[name]?.shape, expected[i].shape)
            XCTAssertEqual(out.tensors[name]?.array, expected[i].array, name)
        }
        XCTAssertEqual(out.tensors["logits"]?.shape, [2, 10])
    }

    /// An input too large for memory is refused with the estimate, before the forward pass; an output that names
    /// an input is refused without touching it.
    func testOversizedInputAndOverwritingOutputAreRefused() throws {
        EngineRandom.seed(1)
        let model = try ResNet(arch: "acmix_resnet26", numClasses: nil)
        let weights = tmp("w26.safetensors"), input = tmp("big.safetensors")
        try SafeTensors.write(model.namedTensors(), to: weights)
        try SafeTensors.write([("input", Tensor(zeros: [1, 3, 1100, 1100]))], to: input)
        var (rc, err) = try run(["--arch", "acmix_resnet26", "--weights", weights, "--input", input, "--output", tmp("o.safetensors"),
                                 "--memory-limit", "0.05"])
        XCTAssertEqual(rc, 1, err)
        XCTAssertTrue(err.contains("input 1x3x1100x1100 would need about") && err.contains("above the limit of 51.2 MiB"), err)
        XCTAssertEqual(err.split(separator: "\n").count, 1, err)
        // A NaN in the input tensor would give NaN features with exit status 0.
        let nanInput = tmp("nan.safetensors"), nan = Tensor(zeros: [1, 3, 64, 64])
        nan.data[5] = .nan
        try SafeTensors.write([("input", nan)], to: nanInput)
        (rc, err) = try run(["--arch", "acmix_resnet26", "--weights", weights, "--input", nanInput, "--output", tmp("n.safetensors")])
        XCTAssertEqual(rc, 1, err)
        XCTAssertTrue(err.contains("nan.safetensors: 'input' holds 1 NaN or infinite value of 12288"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp("n.safetensors")))
        let before = try Data(contentsOf: URL(fileURLWithPath: weights))
        (rc, err) = try run(["--arch", "acmix_resnet26", "--weights", weights, "--input", input, "--output", weights])
        XCTAssertEqual(rc, 2, err)
        XCTAssertTrue(err.contains("--output \(weights) is the --weights file"), err)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: weights)), before)
    }

    /// Folders and several images: one features file per image, named after it, with the file name and the
    /// preprocessing in the metadata and the same features as one image at a time; a broken file is skipped.
    func testFoldersGiveOneFeaturesFilePerImage() throws {
        EngineRandom.seed(2)
        let model = try ResNet(arch: "acmix_resnet26", numClasses: nil)
        let weights = tmp("wf.safetensors"), folder = tmp("imgs"), out = tmp("feats")
        try SafeTensors.write(model.namedTensors(), to: weights)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 1)
        for (name, w, h) in [("a", 96, 64), ("b", 64, 80)] {
            try writePNG(Image(width: w, height: h, pixels: (0..<(w * h * 3)).map { _ in UInt8(rng.next() % 256) }), to: "\(folder)/\(name).png")
        }
        try Data("junk".utf8).write(to: URL(fileURLWithPath: "\(folder)/c.png"))
        let (rc, err) = try run(["--arch", "acmix_resnet26", "--weights", weights, "--image", folder, "--output", out])
        XCTAssertEqual(rc, 1, err)
        XCTAssertTrue(err.contains("c.png") && err.contains("1 of 3 inputs could not be used"), err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["a.safetensors", "b.safetensors"])
        model.eval()
        for name in ["a", "b"] {
            let f = try SafeTensors.read(path: "\(out)/\(name).safetensors")
            XCTAssertEqual(f.metadata["file_name"], "\(folder)/\(name).png")
            XCTAssertTrue(f.metadata["preprocess"]?.contains("123.675") ?? false)
            let img = Normalize()(try readImage("\(folder)/\(name).png"))
            let expected = withNoGrad { model.features(Tensor(img.data, shape: [1, 3, img.height, img.width])) }
            XCTAssertEqual(f.tensors["c5"]?.array, expected[3].array, name)
        }
    }

    func testSwinDenseWithClassifierWeights() throws {
        // A classifier's weights (final norm + head, no per-stage norms) in dense mode on a non-square size.
        EngineRandom.seed(5)
        let classifier = try SwinTransformer.make(arch: "acmix_swin_tiny", numClasses: 7)
        let weights = tmp("swin.safetensors"), input = tmp("swin-x.safetensors"), output = tmp("swin-out.safetensors")
        try SafeTensors.write(classifier.namedTensors(), to: weights)
        let x = Tensor((0..<(1 * 3 * 100 * 75)).map { Float($0 % 13) / 13 - 0.5 }, shape: [1, 3, 100, 75])
        try SafeTensors.write([("input", x)], to: input)
        let (rc, err) = try run(["--arch", "acmix_swin_tiny", "--weights", weights, "--input", input, "--output", output, "--mode", "dense"])
        XCTAssertEqual(rc, 0, err)
        let dense = try SwinTransformer.make(arch: "acmix_swin_tiny", mode: .dense, numClasses: 0)
        try dense.load(stateDict: classifier.stateDict(), strict: false)
        dense.eval()
        let expected = withNoGrad { dense.features(x) }
        let out = try SafeTensors.read(path: output)
        for i in 0..<4 {
            XCTAssertEqual(out.tensors["stage\(i + 1)"]?.shape, expected[i].shape)
            XCTAssertEqual(out.tensors["stage\(i + 1)"]?.array, expected[i].array)
        }
        XCTAssertEqual(expected[0].shape, [1, 96, 25, 19])
        // Classification mode is the authors' fixed-size model: a non-square input, or a square one whose windows do
        // not tile every stage (the weights would not fit), is a clear usage error.
        let (rc2, err2) = try run(["--arch", "acmix_swin_tiny", "--weights", weights, "--input", input, "--output", output])
        XCTAssertEqual(rc2, 2)
        XCTAssertTrue(err2.contains("square inputs whose side is a multiple of 224") && err2.contains("got 100x75"), err2)
        let square = tmp("swin-sq.safetensors")
        try SafeTensors.write([("input", Tensor(zeros: [1, 3, 96, 96]))], to: square)
        let (rc3, err3) = try run(["--arch", "acmix_swin_tiny", "--weights", weights, "--input", square, "--output", output])
        XCTAssertEqual(rc3, 2)
        XCTAssertTrue(err3.contains("got 96x96") && !err3.contains("do not match"), err3)
    }

    func testBadInputsGiveOneErrorLine() throws {
        EngineRandom.seed(1)
        let weights = tmp("w2.safetensors"), input = tmp("x2.safetensors")
        try SafeTensors.write(try ResNet(arch: "acmix_resnet26", numClasses: nil).namedTensors(), to: weights)
        try SafeTensors.write([("input", Tensor(zeros: [1, 3, 32, 32]))], to: input)
        let big = tmp("x3.safetensors")
        try SafeTensors.write([("input", Tensor(zeros: [1, 3, 128, 128]))], to: big)
        let cases: [([String], String)] = [
            (["--arch", "acmix_resnet26", "--weights", weights, "--input", input, "--output", tmp("o.safetensors")], "too small"),
            (["--arch", "acmix_resnet26", "--weights", weights, "--input", input, "--input-key", "nope", "--output", tmp("o.safetensors")], "no tensor 'nope'"),
            (["--arch", "acmix_resnet26", "--weights", weights, "--input", big, "--output", tmp("o.safetensors"), "--logits"], "classification head"),
            (["--arch", "acmix_resnet50", "--weights", weights, "--input", big, "--output", tmp("o.safetensors")], "missing keys"),
            (["--arch", "acmix_resnet26", "--weights", tmp("absent.safetensors"), "--input", big, "--output", tmp("o.safetensors")], "cannot open"),
            (["--arch", "resnet999", "--weights", weights, "--input", input, "--output", tmp("o.safetensors")], "unknown --arch"),
        ]
        for (args, fragment) in cases {
            let (rc, err) = try run(args)
            XCTAssertNotEqual(rc, 0, "\(args)")
            XCTAssertTrue(err.contains(fragment), "expected '\(fragment)' in: \(err)")
            XCTAssertFalse(err.contains("Fatal error"), err)
        }
    }
}
