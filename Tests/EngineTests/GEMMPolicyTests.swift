import Engine
import XCTest

/// The GEMM library follows the CPU's own features: never OpenBLAS's generic kernels on an AVX2/AVX-512 CPU, and
/// oneDNN's sgemm computes what OpenBLAS's does for every transpose, stride, alpha and beta the engine passes.
final class GEMMPolicyTests: XCTestCase {
    func testOpenBLASCoresAreTrustedOnlyAtTheCPUsLevel() {
        XCTAssertFalse(GEMMPolicy.trusts(core: "Prescott", cpu: .avx512))
        XCTAssertFalse(GEMMPolicy.trusts(core: "Prescott", cpu: .avx2))
        XCTAssertFalse(GEMMPolicy.trusts(core: "Haswell", cpu: .avx512))
        XCTAssertFalse(GEMMPolicy.trusts(core: "SomethingNew", cpu: .avx2))
        XCTAssertTrue(GEMMPolicy.trusts(core: "Zen", cpu: .avx2))
        XCTAssertTrue(GEMMPolicy.trusts(core: "SkylakeX", cpu: .avx512))
        XCTAssertTrue(GEMMPolicy.trusts(core: "Cooperlake", cpu: .avx512))
        XCTAssertTrue(GEMMPolicy.trusts(core: "Prescott", cpu: .generic))
    }

    /// On this machine: a model's worth of GEMMs (matmul with its gradients, an im2col convolution) runs on no
    /// generic kernel when the CPU has AVX2 or AVX-512.
    func testNoGEMMRunsOnAGenericKernel() {
        let saved = GEMMPolicy.forced
        GEMMPolicy.forced = nil
        defer { GEMMPolicy.forced = saved }
        let before = GEMMPolicy.calls(.openBLAS)
        let a = Tensor((0..<(64 * 96)).map { Float($0 % 11) / 11 }, shape: [64, 96], requiresGrad: true)
        let b = Tensor((0..<(96 * 48)).map { Float($0 % 7) / 7 }, shape: [96, 48], requiresGrad: true)
        matmul(a, b).sum().backward()
        let x = Tensor((0..<(2 * 8 * 12 * 12)).map { Float($0 % 5) / 5 }, shape: [2, 8, 12, 12])
        let w = Tensor((0..<(16 * 8 * 9)).map { Float($0 % 3) / 3 }, shape: [16, 8, 3, 3])
        let saveConv = ConvPolicy.forced
        ConvPolicy.forced = .engine
        _ = withNoGrad { conv2d(x, w, stride: (1, 1), padding: (1, 1)) }
        ConvPolicy.forced = saveConv
        let cpu = CPUInfo.current
        if cpu.level >= .avx2 && !GEMMPolicy.openBLASMatchesCPU {
            XCTAssertEqual(GEMMPolicy.calls(.openBLAS), before,
                           "OpenBLAS core \(GEMMPolicy.openBLASCore) is below \(cpu.summary) but ran GEMMs")
        }
        if cpu.level >= .avx2 {
            XCTAssertNotEqual(GEMMPolicy.kernel(m: 64, n: 48, k: 96), .openBLAS,
                              "oneDNN is available and measured faster on every shape class")
            XCTAssertTrue(cpu.oneDNNISA.hasPrefix("avx2") || cpu.oneDNNISA.hasPrefix("avx512"), "oneDNN ISA \(cpu.oneDNNISA) on \(cpu.summary)")
        }
    }

    func testOneDNNMatchesOpenBLASOnEveryTransposeStrideAndBeta() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (2, -0.25)] {
                let m = 37, n = 53, k = 29, lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2
                let aRows = ta ? k : m, bRows = tb ? n : k
                let a = (0..<(aRows * lda)).map { Float(($0 * 7919) % 23) / 23 - 0.5 }
                let b = (0..<(bRows * ldb)).map { Float(($0 * 104729) % 19) / 19 - 0.5 }
                var c0 = (0..<(m * ldc)).map { Float($0 % 13) / 13 }
                if beta == 0 { c0 = c0.map { _ in .nan } }   // beta 0 never reads C
                var viaBLAS = c0, viaDNNL = c0
                for (kernel, out) in [(GEMMKernel.openBLAS, 0), (.oneDNN, 1)] {
                    var c = out == 0 ? viaBLAS : viaDNNL
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                gemmCall(kernel, transA: ta, transB: tb, m, n, k, alpha, ap.baseAddress!, lda, bp.baseAddress!, ldb,
                                         beta, cp.baseAddress!, ldc)
                            }
                        }
                    }
                    if out == 0 { viaBLAS = c } else { viaDNNL = c }
                }
                for i in 0..<m {
                    for j in 0..<n {
                        XCTAssertEqual(viaDNNL[i * ldc + j], viaBLAS[i * ldc + j], accuracy: 1e-4, "ta \(ta) tb \(tb) beta \(beta) at \(i),\(j)")
                    }
                    // Padding between rows stays untouched.
                    for j in n..<ldc {
                        let x = viaDNNL[i * ldc + j], y = c0[i * ldc + j]
                        XCTAssertTrue(x == y || (x.isNaN && y.isNaN), "row padding written at \(i),\(j)")
                    }
                }
            }
        }
    }
}
