import Config
import Foundation
import NN
import TestSupport
import XCTest

/// Every zoo config reproduces the test-time behaviour of the mmdet 3.3 / mmseg 1.2 config it corresponds to, as
/// their own config files state it (Tests/Fixtures/zoo_reference/zoo_reference.json, written from the installed
/// packages by scripts/reference/dump_zoo_reference.py): test resize, model test_cfg (every value, and no extra
/// ones: a slide window where mmseg tests whole images is a difference), class counts, mmseg's reduce_zero_label.
final class ZooConfigTests: XCTestCase {
    func testZooConfigsMatchTheirMMDetAndMMSegCounterparts() throws {
        let root = ToolRunner.packageRoot.path
        let fixture = try JSON.parse(String(contentsOfFile: "\(root)/Tests/Fixtures/zoo_reference/zoo_reference.json", encoding: .utf8))
        let configs = try XCTUnwrap(fixture["configs"]?.objectValue)
        XCTAssertGreaterThanOrEqual(configs.count, 13)
        // Every zoo config of ours (not the shapes demos) has a counterpart in the fixture.
        let shipped = FileManager.default.enumerator(atPath: "\(root)/configs")!.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".json") && !$0.hasPrefix("_base_") && !$0.contains("shapes") }.map { "configs/" + $0 }
        XCTAssertEqual(Set(shipped), Set(configs.map(\.0)), "zoo configs without an mmdet/mmseg reference, or references without a config")

        for (path, ref) in configs {
            let cfg = try Config.load(path: "\(root)/\(path)")
            let counterpart = ref["counterpart"]?.stringValue ?? "?"
            func expect(_ ours: JSON?, _ theirs: JSON?, _ what: String) {
                XCTAssertTrue(same(ours, theirs), "\(path): \(what) is \(ours?.serialized() ?? "absent"), \(counterpart) has \(theirs?.serialized() ?? "absent")")
            }
            // test_cfg: the same leaves with the same values.
            let ourTest = leaves(cfg["model.test_cfg"]), theirTest = leaves(ref["test_cfg"])
            XCTAssertEqual(Set(ourTest.keys), Set(theirTest.keys), "\(path): model.test_cfg keys differ from \(counterpart)")
            for (k, v) in theirTest { expect(ourTest[k], v, "model.test_cfg.\(k)") }
            // Classes of every head.
            for (head, n) in ref["num_classes"]?.objectValue ?? [] { expect(cfg["model.\(head).num_classes"], n, "model.\(head).num_classes") }
            // Test resize (ours: data.img_scale, [long, short] as mmdet's scale), mmseg's label reduction.
            expect(cfg["data.img_scale"], ref["test_pipeline"]?["resize"]?["scale"], "data.img_scale")
            if ref["task"]?.stringValue == "seg" {
                expect(cfg["data.reduce_zero_label"] ?? .bool(false), ref["test_pipeline"]?["reduce_zero_label"], "data.reduce_zero_label")
                for (head, ac) in ref["align_corners"]?.objectValue ?? [] {
                    expect(cfg["model.\(head).align_corners"] ?? .bool(false), ac, "model.\(head).align_corners")
                }
            } else {
                expect(cfg["data.size_divisor"] ?? .int(32), ref["data_preprocessor"]?["pad_size_divisor"], "data.size_divisor")
            }
        }
    }

    /// Dotted paths of a JSON object's leaves.
    func leaves(_ json: JSON?, _ prefix: String = "") -> [String: JSON] {
        guard let json else { return [:] }
        guard let kv = json.objectValue else { return [prefix: json] }
        var out: [String: JSON] = [:]
        for (k, v) in kv { out.merge(leaves(v, prefix.isEmpty ? k : "\(prefix).\(k)")) { a, _ in a } }
        return out
    }

    /// Equal values, numbers compared as numbers (1 == 1.0).
    func same(_ a: JSON?, _ b: JSON?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (x?, y?):
            if let p = x.doubleValue, let q = y.doubleValue { return p == q }
            if let p = x.arrayValue, let q = y.arrayValue { return p.count == q.count && zip(p, q).allSatisfy { same($0, $1) } }
            return x.serialized() == y.serialized()
        default: return false
        }
    }
}
