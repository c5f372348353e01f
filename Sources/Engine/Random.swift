import Foundation

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator so every augmentation and every shuffle is a pure
/// function of its seed, on any platform and in any thread order.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one item of a stream (e.g. sample `index` of `epoch`), independent of how many numbers other
    /// items drew: the seeds are mixed rather than consumed in sequence.
    public init(seed: UInt64, stream: UInt64, index: UInt64 = 0) {
        var mixer = SplitMix64(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        mixer.state ^= mixer.next() ^ (stream &* 0xD1B5_4A32_D192_ED03)
        mixer.state ^= mixer.next() ^ (index &* 0x94D0_49BB_1331_11EB)
        state = mixer.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits (numpy's `random()` resolution).
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [low, high) — numpy's `uniform(low, high)`.
    public mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * uniform() }

    /// Uniform integer in [low, high) — numpy's `randint(low, high)` (high exclusive).
    public mutating func randint(_ low: Int, _ high: Int) -> Int {
        precondition(high > low, "randint needs high > low")
        return low + Int(next(upperBound: UInt64(high - low)))
    }

    /// True with probability `p`.
    public mutating func bernoulli(_ p: Double) -> Bool { uniform() < p }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 0x1.0p-53)
        let u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}
