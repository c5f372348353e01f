import Foundation

/// Learning rate by iteration, as mmcv's iteration-based LR hooks: a policy (step, cosine, poly, constant)
/// gives the regular rate, and a linear warm-up scales it during the first `warmupIters` iterations.
public struct LRSchedule: Equatable {
    public enum Policy: Equatable {
        case constant
        /// Multiply by `gamma` at each iteration in `steps`.
        case step(steps: [Int], gamma: Double)
        /// Cosine annealing from the base rate to `minLR` over `maxIters`.
        case cosine(maxIters: Int, minLR: Double)
        /// (base − minLR)·(1 − iter/maxIters)^power + minLR.
        case poly(maxIters: Int, power: Double, minLR: Double)
    }

    public var baseLR: Double
    public var policy: Policy
    public var warmupIters: Int
    public var warmupRatio: Double

    public init(baseLR: Double, policy: Policy = .constant, warmupIters: Int = 0, warmupRatio: Double = 0.001) {
        self.baseLR = baseLR; self.policy = policy; self.warmupIters = warmupIters; self.warmupRatio = warmupRatio
    }

    /// Rate for (0-based) iteration `iter`.
    public func lr(at iter: Int) -> Double {
        let regular: Double
        switch policy {
        case .constant: regular = baseLR
        case let .step(steps, gamma): regular = baseLR * pow(gamma, Double(steps.filter { iter >= $0 }.count))
        case let .cosine(maxIters, minLR):
            regular = minLR + 0.5 * (baseLR - minLR) * (1 + cos(Double.pi * Double(min(iter, maxIters)) / Double(maxIters)))
        case let .poly(maxIters, power, minLR):
            regular = (baseLR - minLR) * pow(1 - Double(min(iter, maxIters)) / Double(maxIters), power) + minLR
        }
        guard iter < warmupIters else { return regular }
        let k = (1 - Double(iter) / Double(warmupIters)) * (1 - warmupRatio)
        return regular * (1 - k)
    }
}
