import XCTest
import Engine
import NN

final class OptimTests: XCTestCase {
    func testSGDMomentumNesterovWeightDecay() {
        // Two steps of torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True) by hand.
        let p = Tensor([1, -2], shape: [2], requiresGrad: true)
        let opt = SGD([ParamGroup(params: [("p", p)], weightDecay: 0.01)], lr: 0.1, momentum: 0.9, nesterov: true)
        var expected: [Double] = [1, -2], buf: [Double] = [0, 0]
        for step in 0..<2 {
            p.grad = Tensor([0.5, 0.25], shape: [2])
            opt.step()
            for i in 0..<2 {
                let d = [0.5, 0.25][i] + 0.01 * expected[i]
                buf[i] = step == 0 ? d : 0.9 * buf[i] + d
                expected[i] -= 0.1 * (d + 0.9 * buf[i])
            }
        }
        for i in 0..<2 { XCTAssertEqual(Double(p.data[i]), expected[i], accuracy: 1e-6) }
    }

    func testAdamWMatchesPyTorchUpdate() {
        let p = Tensor([0.5], shape: [1], requiresGrad: true)
        let opt = AdamW([ParamGroup(params: [("p", p)], weightDecay: 0.05)], lr: 0.01)
        var x = 0.5, m = 0.0, v = 0.0
        for t in 1...3 {
            let g = 0.3 * Double(t)
            p.grad = Tensor([Float(g)], shape: [1])
            opt.step()
            x *= 1 - 0.01 * 0.05
            m = 0.9 * m + 0.1 * g; v = 0.999 * v + 0.001 * g * g
            x -= 0.01 / (1 - pow(0.9, Double(t))) * m / (v.squareRoot() / (1 - pow(0.999, Double(t))).squareRoot() + 1e-8)
        }
        XCTAssertEqual(Double(p.data[0]), x, accuracy: 1e-6)
    }

    /// The eight-lane updates give each element exactly what the scalar loop gives it (a one-element parameter runs
    /// only the scalar loop), for AdamW and for SGD with and without Nesterov momentum.
    func testVectorUpdatesAreBitIdenticalToScalar() {
        let n = 19
        let values = (0..<n).map { Float($0 * 37 % 11) * 0.173 - 0.9 }, grads = (0..<n).map { Float($0 * 13 % 7) * 0.31 - 1.1 }
        func run(_ make: ([(String, Tensor)]) -> Optimizer) {
            let whole = Tensor(values, shape: [n], requiresGrad: true)
            let single = (0..<n).map { Tensor([values[$0]], shape: [1], requiresGrad: true) }
            let a = make([("p", whole)]), b = make(single.enumerated().map { ("p\($0.offset)", $0.element) })
            for step in 1...3 {
                whole.grad = Tensor(grads.map { $0 * Float(step) }, shape: [n])
                for (i, t) in single.enumerated() { t.grad = Tensor([grads[i] * Float(step)], shape: [1]) }
                a.step(); b.step()
            }
            XCTAssertEqual(whole.array, single.map { $0.array[0] })
        }
        run { AdamW([ParamGroup(params: $0, weightDecay: 0.05)], lr: 0.01) }
        run { SGD([ParamGroup(params: $0, weightDecay: 0.01)], lr: 0.1, momentum: 0.9, nesterov: true) }
        run { SGD([ParamGroup(params: $0, weightDecay: 0.01)], lr: 0.1, momentum: 0.9) }
        run { SGD([ParamGroup(params: $0, weightDecay: 0)], lr: 0.1, momentum: 0) }
    }

    func testOptimizerStateRestoresExactly() throws {
        let p = Tensor([1, 2], shape: [2], requiresGrad: true), q = Tensor([1, 2], shape: [2], requiresGrad: true)
        let a = AdamW([ParamGroup(params: [("p", p)], weightDecay: 0.1)], lr: 0.1)
        p.grad = Tensor([1, -1], shape: [2]); a.step()
        let b = AdamW([ParamGroup(params: [("p", q)], weightDecay: 0.1)], lr: 0.1)
        try b.loadState(Dictionary(uniqueKeysWithValues: a.stateTensors().map { ($0.0, $0.1.copy()) }))
        q.assign(p)
        p.grad = Tensor([0.5, 2], shape: [2]); q.grad = Tensor([0.5, 2], shape: [2])
        a.step(); b.step()
        XCTAssertEqual(p.array, q.array)
        XCTAssertThrowsError(try b.loadState([:]))
    }

    func testParamGroupsAndClipping() {
        final class M: Module {
            let fc = Linear(3, 2)
            let relative_position_bias_table = Init.constant([4, 2], 0)
        }
        let groups = paramGroups(M(), weightDecay: 0.05, noDecayOn1D: true, noDecayKeys: ["relative_position_bias_table"])
        XCTAssertEqual(groups[0].params.map(\.0), ["fc.weight"])
        XCTAssertEqual(Set(groups[1].params.map(\.0)), ["fc.bias", "relative_position_bias_table"])
        let plain = paramGroups(M(), weightDecay: 0.05, noDecayOn1D: false, noDecayKeys: [])
        XCTAssertEqual(Set(plain[0].params.map(\.0)), ["fc.weight", "fc.bias", "relative_position_bias_table"])
        XCTAssertEqual(plain[1].params.count, 0)
        let t = Tensor([0, 0], shape: [2], requiresGrad: true)
        t.grad = Tensor([3, 4], shape: [2])
        XCTAssertEqual(clipGradNorm([t], maxNorm: 1), 5, accuracy: 1e-5)
        XCTAssertEqual(t.grad!.array[0], 0.6, accuracy: 1e-5)
        // Lengths that exercise the four accumulators and the tail; the norm is torch's over all gradients together.
        let values = (0..<1003).map { Float(($0 * 37) % 101) / 50 - 1 }
        let a = Tensor(Array(values[..<998]), shape: [998], requiresGrad: true), b = Tensor(Array(values[998...]), shape: [5], requiresGrad: true)
        a.grad = Tensor(Array(values[..<998]), shape: [998]); b.grad = Tensor(Array(values[998...]), shape: [5])
        let expected = values.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertEqual(Double(clipGradNorm([a, b], maxNorm: 1e9)), expected, accuracy: expected * 1e-7)
        XCTAssertEqual(b.grad!.array, Array(values[998...]))
    }

    func testSchedules() {
        let warm = LRSchedule(baseLR: 0.01, policy: .step(steps: [1000, 2000], gamma: 0.1), warmupIters: 500, warmupRatio: 0.001)
        XCTAssertEqual(warm.lr(at: 0), 0.01 * 0.001, accuracy: 1e-12)
        XCTAssertEqual(warm.lr(at: 250), 0.01 * (1 - 0.5 * 0.999), accuracy: 1e-12)
        XCTAssertEqual(warm.lr(at: 1500), 0.01 * 0.1, accuracy: 1e-12)
        XCTAssertEqual(warm.lr(at: 2000), 0.01 * 0.01, accuracy: 1e-12)
        let poly = LRSchedule(baseLR: 6e-5, policy: .poly(maxIters: 100, power: 1, minLR: 0))
        XCTAssertEqual(poly.lr(at: 50), 3e-5, accuracy: 1e-15)
        let cos = LRSchedule(baseLR: 1, policy: .cosine(maxIters: 10, minLR: 0))
        XCTAssertEqual(cos.lr(at: 5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(cos.lr(at: 10), 0, accuracy: 1e-12)
    }

    func testJSONParsingAndErrors() throws {
        let j = try JSON.parse(#"{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}"#)
        XCTAssertEqual(j["a"]?.arrayValue?.count, 5)
        XCTAssertEqual(j["b"]?["c"]?.intValue, -3)
        XCTAssertEqual(try JSON.parse(j.serialized()), j)
        XCTAssertThrowsError(try JSON.parse(#"{"a": [1, 2"#, source: "cfg.json")) { XCTAssertTrue("\($0)".contains("cfg.json")) }
        XCTAssertThrowsError(try JSON.parse(#"{"a": 1} x"#, source: "cfg.json"))
    }
}
