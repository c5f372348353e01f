import Engine
import NN
import XCTest

/// int8 inference: quantized convolutions (`QuantizedConv`) compute Σ q_x·q_w in integers and dequantize in the
/// epilogue. Emulation (`Int8Inference.emulated`) runs the dequantized operands through the float32 kernels and defines
/// the numbers; oneDNN's int8 kernels must give the same up to float rounding.
final class Int8Tests: XCTestCase {
    override func tearDown() {
        Int8Inference.emulated = false
        Int8Inference.model = nil
        try? MixedPrecision.select(.fp32)
    }

    func testWeightsArePerChannelSymmetric() {
        let values: [Float] = (0..<54).map { (i: Int) -> Float in Float(sin(Double(i) * 0.7) * Double(i / 18 + 1)) }
        let w = Tensor(values, shape: [3, 2, 3, 3])
        w.data[18 * 2] = 0   // one exact zero
        for i in 18..<36 { w.data[i] = 0 }   // channel 1 all zero: scale 1, every q 0
        let q = QuantizedConv.quantize(weight: w, inputScale: 0.1, inputSigned: false)
        XCTAssertEqual(q.weightScale[1], 1)
        let deq = q.dequantizedWeight()
        for ch in [0, 2] {
            let row = (ch * 18)..<(ch * 18 + 18)
            let m = row.map { abs(w.data[$0]) }.max()!
            XCTAssertEqual(q.weightScale[ch], m / 127, accuracy: 1e-9)
            XCTAssertEqual(row.map { abs(Int(q.qweight[$0])) }.max(), 127)   // the largest magnitude maps to ±127
            for i in row { XCTAssertEqual(deq[i], w.data[i], accuracy: q.weightScale[ch] / 2 * 1.0001) }
        }
        XCTAssertTrue((18..<36).allSatisfy { q.qweight[$0] == 0 })
    }

    /// A quantized convolution against its definition: the input rounded to the scale's grid (clamped at ±127·s, NaN
    /// to 0), the dequantized weight, a float32 convolution of the two; a convolution the model does not
    /// list stays float32, and training passes never quantize.
    func testEmulatedConvolutionIsTheConvolutionOfDequantizedOperands() throws {
        let conv = Conv2d(8, 16, kernelSize: 3, padding: 1)
        let other = Conv2d(16, 4, kernelSize: 1)
        let x = Tensor((0..<(2 * 8 * 9 * 9)).map { Float(sin(Double($0) * 0.37)) * 2 }, shape: [2, 8, 9, 9])
        x.data[5] = .nan
        let s: Float = 1.9 / 127   // the few inputs beyond ±1.9 clip
        let q = QuantizedConv.quantize(weight: conv.weight, inputScale: s, inputSigned: true)
        let xq = Tensor(x.array.map { v -> Float in v.isNaN ? 0 : min(max((v * (1 / s)).rounded(.toNearestOrEven), -127), 127) * s }, shape: x.shape)
        let wq = Tensor(q.dequantizedWeight(), shape: conv.weight.shape)
        let want = withNoGrad { conv2d(xq, wq, conv.bias, padding: (1, 1)) }
        let float = withNoGrad { other(conv(x)) }
        let otherOnWant = withNoGrad { other(want) }.array

        Int8Inference.emulated = true
        try MixedPrecision.select(.int8)
        Int8Inference.model = Int8Model([("conv", conv.weight, q)])
        let before = Int8Inference.emulatedCalls
        let y = withNoGrad { conv(x) }
        XCTAssertEqual(Int8Inference.emulatedCalls, before + 1)
        let scale = want.array.map(abs).max()!
        XCTAssertLessThan(zip(y.array, want.array).map { abs($0 - $1) }.max()! / scale, 1e-5)
        XCTAssertEqual(withNoGrad { other(want) }.array, otherOnWant, "a layer the model does not list runs float32")
        // Close to float32 (the NaN input position aside, which float32 propagates).
        let f = float.array, g = withNoGrad { other(y) }.array
        XCTAssertLessThan(zip(g, f).filter { $1.isFinite }.map { abs($0 - $1) }.max()! / f.filter(\.isFinite).map(abs).max()!, 0.05)
        // With gradients recorded: float32, bit for bit.
        let trainW = Tensor(conv.weight.array, shape: conv.weight.shape, requiresGrad: true)
        let trained = conv2d(x, trainW, conv.bias, padding: (1, 1))
        XCTAssertEqual(trained.array.filter(\.isFinite), withNoGrad { conv2d(x, trainW, conv.bias, padding: (1, 1)) }.array.filter(\.isFinite))
    }

    /// oneDNN's int8 kernels (u8 and s8 sources, 3×3 and 1×1, bias, BatchNorm affine, residual, ReLU, work split over
    /// the threads) against emulation. On a CPU without VNNI they sum u8·s8 pairs in 16 bits, so the check uses weights
    /// within ±63 there (exact on every CPU); with VNNI, the full range.
    func testNativeKernelsMatchEmulation() {
        let before = Int8Inference.nativeCalls
        XCTAssertNil(Int8Inference.nativeSelfCheck(weightLimit: CPUInfo.current.hasVNNI ? 127 : 63))
        XCTAssertGreaterThan(Int8Inference.nativeCalls, before, "oneDNN ran no int8 kernel (\(CPUInfo.current.summary))")
    }

    /// The check again and again: both threads run the same cached plans at once (slices by images and by channels),
    /// so a race between them shows as a wrong result. One did before reorders got scratchpads of their own (s8
    /// weights' compensation through oneDNN's shared one): about one run in ten wrong on Zen 4.
    func testNativeKernelsMatchEmulationRunAfterRun() throws {
        guard CPUInfo.current.hasVNNI else { throw XCTSkip("no VNNI (\(CPUInfo.current.summary)): int8 runs emulated") }
        for run in 0..<40 { XCTAssertNil(Int8Inference.nativeSelfCheck(), "run \(run)") }
    }

    func testInt8IsRefusedOnACPUWithoutVNNIAndInTraining() throws {
        XCTAssertThrowsError(try MixedPrecision.selectTraining(.int8)) { e in XCTAssertTrue("\(e)".contains("inference"), "\(e)") }
        if CPUInfo.current.hasVNNI { throw XCTSkip("this CPU has VNNI (\(CPUInfo.current.summary))") }
        XCTAssertThrowsError(try MixedPrecision.select(.int8)) { e in
            XCTAssertEqual((e as? KitError)?.exitCode, 2)
            XCTAssertTrue("\(e)".contains("VNNI"), "\(e)")
        }
        XCTAssertEqual(MixedPrecision.inference, .fp32)
    }
}
