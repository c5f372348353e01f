import Engine
import NN
import XCTest

/// bf16 inference: operands rounded to nearest-even bf16, products and sums in float32, everything else float32.
/// Emulation (`MixedPrecision.emulated`) defines the numbers; on a CPU with AVX512-BF16 / AMX-BF16 the native oneDNN
/// kernels must give the same up to summation order. On a CPU without bf16, the tools' `--precision bf16` is refused.
final class BF16Tests: XCTestCase {
    override func tearDown() {
        MixedPrecision.emulated = false
        try? MixedPrecision.select(.fp32)
        try? MixedPrecision.selectTraining(.fp32)
    }

    func testRoundingIsNearestEven() {
        XCTAssertEqual(bf16Rounded(1), 1)
        XCTAssertEqual(bf16Rounded(1 + 1.0 / 256), 1)                      // a tie: to the even neighbour
        XCTAssertEqual(bf16Rounded(1 + 3.0 / 256), 1 + 4.0 / 256)          // a tie: up to the even neighbour
        XCTAssertEqual(bf16Rounded(1 + 1.0 / 256 + 1.0 / 4096), 1 + 2.0 / 256)
        XCTAssertEqual(bf16Rounded(-3.14159), -3.140625)
        XCTAssertEqual(bf16Rounded(.infinity), .infinity)
        XCTAssertTrue(bf16Rounded(.nan).isNaN)
        XCTAssertEqual(bf16Rounded(Float.greatestFiniteMagnitude), .infinity)   // rounds past bf16's largest
    }

    func testBF16IsRefusedOnACPUWithoutIt() throws {
        if CPUInfo.current.hasBF16 { throw XCTSkip("this CPU has bf16 (\(CPUInfo.current.summary))") }
        XCTAssertThrowsError(try MixedPrecision.select(.bf16)) { e in
            XCTAssertEqual((e as? KitError)?.exitCode, 2)
            XCTAssertTrue("\(e)".contains("AVX512-BF16") && "\(e)".contains("AMX-BF16"), "\(e)")
        }
        XCTAssertEqual(MixedPrecision.inference, .fp32)
    }

    /// A convolution and a linear layer at bf16: the float32 results of the rounded operands (emulated); natively the
    /// same within float32 summation-order differences; both within bf16's precision of the float32 results.
    func testConvolutionAndMatmulRunOnRoundedOperands() throws {
        let x = Tensor((0..<(2 * 32 * 12 * 12)).map { Float(sin(Double($0) * 0.37)) }, shape: [2, 32, 12, 12])
        let w = Tensor((0..<(48 * 32 * 9)).map { Float(cos(Double($0) * 0.11)) * 0.1 }, shape: [48, 32, 3, 3])
        let a = Tensor((0..<(50 * 96)).map { Float(sin(Double($0) * 0.7)) }, shape: [50, 96])
        let b = Tensor((0..<(96 * 40)).map { Float(cos(Double($0) * 0.3)) }, shape: [96, 40])
        let ref = withNoGrad { (conv2d(x, w, padding: (1, 1)), matmul(a, b)) }
        func rounded(_ t: Tensor) -> Tensor { Tensor(t.array.map(bf16Rounded), shape: t.shape) }
        let exact = withNoGrad { (conv2d(rounded(x), rounded(w), padding: (1, 1)), matmul(rounded(a), rounded(b))) }

        // A product too small to pay for a bf16 call (a Swin window's attention) stays float32.
        let sa = Tensor(Array(a.array[0..<(49 * 32)]), shape: [49, 32]), sb = Tensor(Array(b.array[0..<(32 * 40)]), shape: [32, 40])
        let smallRef = withNoGrad { matmul(sa, sb) }
        var results: [(String, (Tensor, Tensor))] = []
        for emulate in [true, false] where emulate || CPUInfo.current.hasBF16 {
            MixedPrecision.emulated = emulate
            try MixedPrecision.select(.bf16)
            results.append((emulate ? "emulated" : "native", withNoGrad { (conv2d(x, w, padding: (1, 1)), matmul(a, b)) }))
            XCTAssertEqual(withNoGrad { matmul(sa, sb) }.array, smallRef.array)
            // With gradients recorded, everything stays float32.
            let trained = conv2d(x, Tensor(w.array, shape: w.shape, requiresGrad: true), padding: (1, 1))
            XCTAssertEqual(trained.array, ref.0.array)
        }
        try MixedPrecision.select(.fp32)
        for (name, (y, z)) in results {
            for (got, want, full, what) in [(y, exact.0, ref.0, "conv"), (z, exact.1, ref.1, "matmul")] {
                let g = got.array, e = want.array, f = full.array
                let scale = f.map(abs).max()!
                let vsExact = zip(g, e).map { abs($0 - $1) }.max()! / scale
                let vsFloat = zip(g, f).map { abs($0 - $1) }.max()! / scale
                XCTAssertLessThan(vsExact, 1e-5, "\(name) \(what): not the products of the rounded operands")
                XCTAssertLessThan(vsFloat, 5e-2, "\(name) \(what): too far from float32")
                XCTAssertGreaterThan(vsFloat, 1e-5, "\(name) \(what): no bf16 rounding happened")
            }
        }
    }

    /// amp bf16: the forward and both gradients of a convolution come from bf16-rounded operands (input gradient = the
    /// float32 gradient of the rounded operands with the rounded output gradient); the weights themselves stay float32;
    /// passes without gradients (evaluation during training) stay float32. Covered: a 3×3 convolution (blocked), 1×1
    /// ones (dense gradients; one whose weight outnumbers its activations, split by channels), and the convolutions
    /// amp keeps float32 (grouped with few inputs, fewer than 16 inputs per output), which must equal float32 exactly;
    /// few outputs alone do not keep it float32.
    func testMixedPrecisionTrainingRoundsForwardAndBackward() throws {
        MixedPrecision.emulated = !CPUInfo.current.hasBF16
        // (input, weight, padding, groups, runs bf16)
        let cases: [([Int], [Int], Int, Int, Bool)] = [
            ([1, 8, 6, 6], [16, 8, 3, 3], 1, 1, true),
            ([2, 32, 9, 7], [48, 32, 1, 1], 0, 1, true),
            ([2, 256, 4, 4], [512, 256, 1, 1], 0, 1, true),
            ([2, 18, 6, 6], [32, 9, 3, 3], 1, 2, false),
            ([1, 4, 6, 6], [24, 4, 1, 1], 0, 1, false),
            ([1, 24, 6, 6], [4, 24, 1, 1], 0, 1, true),
        ]
        for (xs, ws, p, groups, rounds) in cases {
            let xv = (0..<xs.reduce(1, *)).map { Float(sin(Double($0) * 0.37)) }, wv = (0..<ws.reduce(1, *)).map { Float(cos(Double($0) * 0.11)) * 0.1 }
            let ys = [xs[0], ws[0], xs[2] + 2 * p - ws[2] + 1, xs[3] + 2 * p - ws[3] + 1]
            let gyv = (0..<ys.reduce(1, *)).map { Float(sin(Double($0) * 0.05)) }
            func run(_ amp: Precision, round: Bool) throws -> (y: [Float], gx: [Float], gw: [Float]) {
                try MixedPrecision.selectTraining(amp)
                let r: (Float) -> Float = round ? bf16Rounded : { $0 }
                let x = Tensor(xv.map(r), shape: xs, requiresGrad: true), w = Tensor(wv.map(r), shape: ws, requiresGrad: true)
                let y = conv2d(x, w, padding: (p, p), groups: groups)
                y.backward(Tensor(gyv.map(r), shape: y.shape))
                return (y.array, x.grad!.array, w.grad!.array)
            }
            let amp = try run(.bf16, round: false), exact = try run(.fp32, round: true), full = try run(.fp32, round: false)
            for (name, a, e, f) in [("forward", amp.y, exact.y, full.y), ("input gradient", amp.gx, exact.gx, full.gx),
                                    ("weight gradient", amp.gw, exact.gw, full.gw)] {
                guard rounds else {
                    XCTAssertEqual(a, f, "\(xs) \(ws): \(name) not float32")
                    continue
                }
                let scale = f.map(abs).max()!
                XCTAssertLessThan(zip(a, e).map { abs($0 - $1) }.max()! / scale, 1e-5, "\(xs) \(ws): \(name) not from the rounded operands")
                XCTAssertGreaterThan(zip(a, f).map { abs($0 - $1) }.max()! / scale, 1e-6, "\(xs) \(ws): \(name): no rounding")
            }
            // Evaluation inside an amp run (no gradients) stays float32.
            try MixedPrecision.selectTraining(.bf16)
            let x = Tensor(xv, shape: xs), w = Tensor(wv, shape: ws)
            XCTAssertEqual(withNoGrad { conv2d(x, w, padding: (p, p), groups: groups) }.array, full.y)
        }
    }

    /// amp's dense 1×1 convolutions (`DenseBF16Operands`) keep the forward's bf16 input and weight for the backward:
    /// with a bias and the fused ReLU, at stride 1 and 2, and with only one of input and weight taking a gradient, the
    /// output and gradients are those of the float32 kernels on rounded operands (the bias gradient a float32 sum), and
    /// a changed weight is converted anew.
    func testDenseAmpConvolutionsShareTheirConvertedOperands() throws {
        MixedPrecision.emulated = !CPUInfo.current.hasBF16
        for (stride, gradX, gradW) in [(1, true, true), (2, true, true), (2, false, true), (1, true, false)] {
            let xs = [2, 32, 9, 8], ws = [48, 32, 1, 1]
            let ho = (9 - 1) / stride + 1, wo = (8 - 1) / stride + 1
            let xv = (0..<xs.reduce(1, *)).map { Float(sin(Double($0) * 0.37)) }
            let wv = (0..<ws.reduce(1, *)).map { Float(cos(Double($0) * 0.11)) * 0.1 }
            let bv = (0..<48).map { Float($0 % 7) * 0.05 - 0.15 }
            let gyv = (0..<(2 * 48 * ho * wo)).map { Float(sin(Double($0) * 0.05)) }
            func run(_ amp: Precision, round: Bool, step: Float) throws -> [[Float]] {
                try MixedPrecision.selectTraining(amp)
                let r: (Float) -> Float = round ? bf16Rounded : { $0 }
                let x = Tensor(xv.map(r), shape: xs, requiresGrad: gradX)
                let w = Tensor(wv.map { r($0 * step) }, shape: ws, requiresGrad: gradW)
                let b = Tensor(bv, shape: [48], requiresGrad: true)
                let y = conv2d(x, w, b, stride: (stride, stride), relu: true)
                y.backward(Tensor(gyv.map(r), shape: y.shape))
                return [y.array, x.grad?.array ?? [], w.grad?.array ?? [], b.grad!.array]
            }
            for step: Float in [1, 1.5] {
                let before = MixedPrecision.operandCopies
                let amp = try run(.bf16, round: false, step: step)
                if CPUInfo.current.hasBF16 {
                    // One conversion each of input, weight and output gradient, shared by the three passes.
                    XCTAssertEqual(MixedPrecision.operandCopies - before, 3, "stride \(stride): conversions")
                }
                let exact = try run(.fp32, round: true, step: step)
                // The bias gradient: a float32 sum of the unrounded output gradient where the output is positive.
                let plane = ho * wo
                let bias = (0..<48).map { o in
                    (0..<2).reduce(Float(0)) { sum, n in
                        (0..<plane).reduce(sum) { $0 + (exact[0][(n * 48 + o) * plane + $1] > 0 ? gyv[(n * 48 + o) * plane + $1] : 0) }
                    }
                }
                for (i, name) in ["forward", "input gradient", "weight gradient", "bias gradient"].enumerated() {
                    let a = amp[i], e = i == 3 ? bias : exact[i]
                    XCTAssertEqual(a.count, e.count, "stride \(stride): \(name)")
                    guard !e.isEmpty else { continue }
                    let scale = max(e.map(abs).max()!, 1e-6)
                    XCTAssertLessThan(zip(a, e).map { abs($0 - $1) }.max()! / scale, 1e-5,
                                      "stride \(stride), weight ×\(step), gradients \(gradX)/\(gradW): \(name) not from the rounded operands")
                }
            }
        }
    }

    /// bf16 inference of a large 3×3 convolution runs float32 Winograd where the CPU's bf16 is AVX512-BF16 (not
    /// AMX): the float32 numbers exactly; on AMX it runs bf16 (`ConvPolicy.winogradOverBF16`).
    func testLargeConvolutionsTakeFloat32WinogradOverAVX512BF16() throws {
        guard CPUInfo.current.hasBF16 else { throw XCTSkip("no bf16 on this CPU (\(CPUInfo.current.summary))") }
        let x = Tensor((0..<(64 * 64 * 64)).map { Float(sin(Double($0) * 0.37)) }, shape: [1, 64, 64, 64])
        let w = Tensor((0..<(64 * 64 * 9)).map { Float(cos(Double($0) * 0.11)) * 0.1 }, shape: [64, 64, 3, 3])
        let before = ConvPolicy.winogradPasses
        let full = withNoGrad { conv2d(x, w, padding: (1, 1)) }.array
        guard ConvPolicy.winogradPasses > before else { throw XCTSkip("no Winograd kernel for this shape on this CPU (\(CPUInfo.current.summary))") }
        try MixedPrecision.select(.bf16)
        let got = withNoGrad { conv2d(x, w, padding: (1, 1)) }.array
        if CPUInfo.current.hasAMX { XCTAssertNotEqual(got, full) } else { XCTAssertEqual(got, full) }
    }

    func testAmpIsRefusedOnACPUWithoutBF16() throws {
        if CPUInfo.current.hasBF16 { throw XCTSkip("this CPU has bf16 (\(CPUInfo.current.summary))") }
        XCTAssertThrowsError(try MixedPrecision.selectTraining(.bf16, option: "--amp")) { e in
            XCTAssertEqual((e as? KitError)?.exitCode, 2)
            XCTAssertTrue("\(e)".hasPrefix("--amp bf16: this CPU"), "\(e)")
        }
    }

    /// A frozen model's weights are packed once (`FrozenWeights`): the same numbers as unpacked, call after call; an
    /// optimizer step forgets them, so a changed weight is seen at once. Without bf16 the conv never packs (emulated).
    func testFrozenWeightsGiveTheSameNumbersAndAnOptimizerStepForgetsThem() throws {
        MixedPrecision.emulated = !CPUInfo.current.hasBF16
        defer { FrozenWeights.clear() }
        let x = Tensor((0..<(1 * 32 * 20 * 20)).map { Float(sin(Double($0) * 0.37)) }, shape: [1, 32, 20, 20])
        let w = Tensor((0..<(64 * 32 * 9)).map { Float(cos(Double($0) * 0.11)) * 0.1 }, shape: [64, 32, 3, 3], requiresGrad: true)
        try MixedPrecision.select(.bf16)
        func run() -> [Float] { withNoGrad { conv2d(x, w, padding: (1, 1)) }.array }
        let loose = run()
        let owner = NSObject()
        FrozenWeights.install([w], owner: owner)
        XCTAssertEqual(run(), loose)
        XCTAssertEqual(run(), loose, "second call, from the packed weights")
        // A training step changes the weight; the next inference pass must use the new values.
        try MixedPrecision.select(.fp32)
        let y = conv2d(x, w, padding: (1, 1))
        y.backward(Tensor([Float](repeating: 1, count: y.count), shape: y.shape))
        SGD([ParamGroup(params: [("w", w)], weightDecay: 0)], lr: 0.1).step()
        try MixedPrecision.select(.bf16)
        FrozenWeights.install([w], owner: owner)
        let moved = run()
        FrozenWeights.clear()
        XCTAssertEqual(moved, run(), "stale packed weights after an optimizer step")
        XCTAssertNotEqual(moved, loose)
    }

    /// A frozen model's linear layers in float32 run on oneDNN's matmul with the weight packed once: the products of
    /// `sgemm` within rounding, for the classes it splits (by rows, evenly, over the threads), runs whole, and a batch
    /// of one row.
    func testFrozenFloat32LinearsReadPackedWeightsAndMatchSgemm() throws {
        try MixedPrecision.select(.fp32)
        defer { FrozenWeights.clear() }
        for (rows, inF, outF) in [(49, 768, 3072), (3136, 96, 384), (1, 768, 1000), (5, 40, 24)] {
            let x = Tensor((0..<(rows * inF)).map { Float(sin(Double($0) * 0.37)) }, shape: [rows, inF])
            let w = Tensor((0..<(outF * inF)).map { Float(cos(Double($0) * 0.11)) * 0.1 }, shape: [outF, inF])
            let b = Tensor((0..<outF).map { Float($0 % 7) * 0.1 }, shape: [outF])
            let loose = withNoGrad { linear(x, w, b) }.array
            let owner = NSObject()
            FrozenWeights.install([w], owner: owner)
            let before = GEMMPolicy.frozenWeightCalls
            for pass in 0..<2 {
                let frozen = withNoGrad { linear(x, w, b) }.array
                var worst: Float = 0
                for i in 0..<loose.count { worst = max(worst, abs(frozen[i] - loose[i]) / (abs(loose[i]) + 1)) }
                XCTAssertLessThan(worst, 1e-5, "\(rows)×\(inF)→\(outF), pass \(pass)")
            }
            if CPUInfo.current.level >= .avx512 {   // oneDNN 2.6 has its JIT float32 matmul for AVX-512
                XCTAssertGreaterThan(GEMMPolicy.frozenWeightCalls, before, "\(rows)×\(inF)→\(outF) did not read the packed weight")
            }
            FrozenWeights.clear()
        }
    }

    /// The native kernels' check against the emulated numbers runs (without crashing) wherever the CPU has bf16, and
    /// its verdict is printed; a failed check turns native bf16 off, so every other test here then checks the
    /// emulated path (see `MixedPrecision.nativeVerified`).
    func testNativeSelfCheckVerdict() {
        let verdict = MixedPrecision.nativeVerified
        print("bf16 native kernels on \(CPUInfo.current.summary) (oneDNN ISA \(CPUInfo.current.oneDNNISA)): "
              + (CPUInfo.current.hasBF16 ? (verdict ? "verified against the emulated numbers" : "FAILED their check, emulated instead")
                                          : "absent (no bf16 on this CPU)"))
        if !CPUInfo.current.hasBF16 {
            XCTAssertFalse(verdict)
            // Without bf16 every native kernel reports "no implementation": the check runs through and finds nothing.
            XCTAssertNil(MixedPrecision.nativeSelfCheck())
        } else {
            XCTAssertTrue(verdict, "oneDNN's bf16 kernels disagree with the emulated numbers")
            // Run after run, with the threads sharing cached plans (a race shows as a wrong result; see Int8Tests).
            for run in 0..<20 { XCTAssertNil(MixedPrecision.nativeSelfCheck(), "run \(run)") }
        }
    }
}
