import Engine
import XCTest

/// Selects bf16 inference for a test of the native kernels, or skips the test on a CPU without them (no AVX512-BF16 /
/// AMX-BF16, or the native self-check turned them off).
public func selectNativeBF16OrSkip() throws {
    guard CPUInfo.current.hasBF16 else { throw XCTSkip("this CPU has no bf16 (\(CPUInfo.current.summary))") }
    try MixedPrecision.select(.bf16)
    guard MixedPrecision.native else { throw XCTSkip("native bf16 is off on this CPU") }
}
