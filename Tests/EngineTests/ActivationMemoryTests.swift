import XCTest
import Engine

/// `ActivationMemory.check`: small inputs pass without a probe; a large one is probed at about 1024×1024 pixels of
/// its aspect and refused with the scaled estimate when that is above the limit.
final class ActivationMemoryTests: XCTestCase {
    func testProbeScalesByPixelsAndRefusesAboveTheLimit() throws {
        // A "model" whose activations are 16 floats a pixel.
        var probes: [(Int, Int)] = []
        let forward = { (h: Int, w: Int) throws in probes.append((h, w)); _ = Tensor(zeros: [16, h, w]) }
        try ActivationMemory.check(n: 1, height: 800, width: 1000, limit: nil, hint: "h", forward: forward)
        XCTAssertTrue(probes.isEmpty, "inputs up to 1024×1024 pixels are not probed")
        // 4096×2048: probed at 1440×736 (area ≈ 2^20, multiples of 32); 16·4·4096·2048 bytes = 512 MiB.
        try ActivationMemory.check(n: 1, height: 4096, width: 2048, limit: 600 * 1_048_576, hint: "h", forward: forward)
        XCTAssertEqual(probes.count, 1)
        XCTAssertEqual(probes[0].0 % 32, 0)
        XCTAssertEqual(probes[0].1 % 32, 0)
        XCTAssertThrowsError(try ActivationMemory.check(n: 2, height: 4096, width: 2048, limit: 600 * 1_048_576,
                                                        hint: "use a smaller --shape", forward: forward)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.hasPrefix("input 2x3x4096x2048 would need about 1.0 GiB of activations (measured at "), m)
            XCTAssertTrue(m.hasSuffix("above the limit of 0.6 GiB; use a smaller --shape"), m)
        }
    }
}
