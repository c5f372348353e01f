import Config
import Engine
import Foundation
import NN

/// The task-independent part of a training config (mmcv's schedule/runtime keys), shared by det-train and seg-train.
///
///     "seed": 0,
///     "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001},
///     "optimizer_config": {"grad_clip": {"max_norm": 35}},
///     "lr_config": {"policy": "step", "warmup": "linear", "warmup_iters": 500, "warmup_ratio": 0.001, "step": [8, 11]},
///     "runner": {"type": "EpochBasedRunner", "max_epochs": 12},
///     "checkpoint_config": {"interval": 1}, "log_config": {"interval": 50}, "evaluation": {"interval": 1}
///
/// Intervals and `lr_config.step` count epochs under EpochBasedRunner and iterations under IterBasedRunner (as in
/// mmcv); warm-up always counts iterations.
public struct TrainerSettings {
    public var seed: UInt64 = 0
    /// Training precision (`amp`: "fp32" or "bf16" mixed precision, `MixedPrecision.training`).
    public var amp: Precision = .fp32
    public var optimizerType = "SGD"
    public var lr = 0.01
    public var momentum = 0.9
    public var nesterov = false
    public var weightDecay = 1e-4
    public var betas = (0.9, 0.999)
    public var eps = 1e-8
    /// No weight decay on 1-D tensors (norm weights, biases) — mmdet's Swin `norm_decay_mult=0`.
    public var noDecayOn1D = false
    /// No weight decay on parameters whose key contains one of these (position tables).
    public var noDecayKeys: [String] = []
    public var gradClip: Float?
    public var policy = "step"
    public var steps: [Int] = []
    public var gamma = 0.1
    public var minLR = 0.0
    public var power = 1.0
    public var warmupIters = 0
    public var warmupRatio = 0.001
    public var byEpoch = true
    public var maxEpochs = 12
    public var maxItersSetting = 0
    public var checkpointInterval = 1
    public var logInterval = 50
    public var evalInterval = 1
    /// The metric whose best value keeps `best.safetensors` (e.g. "bbox_mAP", "mIoU").
    public var saveBest: String?

    public init() {}

    /// Schema of the keys above, to merge into a task's config schema; `metric` is the task's `evaluation.metric`.
    public static func schemaFields(metric: ConfigSchema) -> [ConfigSchema.Field] {
        [
            .init("seed", .nonNegativeInt),
            .init("amp", .oneOf(["fp32", "bf16"])),
            .init("work_dir", .string),
            .init("optimizer", .object([
                .init("type", .oneOf(["SGD", "AdamW"]), required: true), .init("lr", .positiveNumber, required: true),
                .init("momentum", .fraction), .init("nesterov", .bool), .init("weight_decay", .nonNegativeNumber),
                .init("betas", .array(.fraction, count: 2)), .init("eps", .positiveNumber),
                .init("paramwise_cfg", .object([.init("norm_decay_mult", .nonNegativeNumber), .init("bias_decay_mult", .nonNegativeNumber),
                                                .init("no_decay_keys", .array(.string))])),
            ]), required: true),
            .init("optimizer_config", .object([.init("grad_clip", .optional(.object([
                .init("max_norm", .positiveNumber, required: true), .init("norm_type", .exactly(2)),
            ])))])),
            .init("lr_config", .object([
                .init("policy", .oneOf(["step", "cosine", "poly", "constant"]), required: true),
                .init("step", .array(.positiveInt)), .init("gamma", .positiveNumber), .init("min_lr", .nonNegativeNumber),
                .init("power", .positiveNumber),
                .init("warmup", .optional(.oneOf(["linear"]))), .init("warmup_iters", .nonNegativeInt), .init("warmup_ratio", .fraction),
            ])),
            .init("runner", .object([.init("type", .oneOf(["EpochBasedRunner", "IterBasedRunner"]), required: true),
                                     .init("max_epochs", .positiveInt), .init("max_iters", .positiveInt)]), required: true),
            .init("checkpoint_config", .object([.init("interval", .positiveInt)])),
            .init("log_config", .object([.init("interval", .positiveInt)])),
            .init("evaluation", .object([.init("interval", .positiveInt), .init("metric", metric),
                                         .init("save_best", .optional(.string))])),
        ]
    }

    /// Reads a validated config.
    public init(config c: Config) throws {
        seed = UInt64(try c.int("seed", default: 0))
        amp = Precision(rawValue: try c.string("amp", default: "fp32")) ?? .fp32
        optimizerType = try c.string("optimizer.type")
        lr = try c.double("optimizer.lr")
        momentum = try c.double("optimizer.momentum", default: optimizerType == "SGD" ? 0.9 : 0)
        nesterov = try c.bool("optimizer.nesterov", default: false)
        weightDecay = try c.double("optimizer.weight_decay", default: 0)
        let b = try c.doubles("optimizer.betas", default: [0.9, 0.999])
        betas = (b[0], b[1])
        eps = try c.double("optimizer.eps", default: 1e-8)
        let normMult = try c.double("optimizer.paramwise_cfg.norm_decay_mult", default: 1)
        let biasMult = try c.double("optimizer.paramwise_cfg.bias_decay_mult", default: 1)
        if (normMult != 0 && normMult != 1) || (biasMult != 0 && biasMult != 1) || normMult != biasMult {
            throw KitError.config("\(c.source(of: "optimizer.paramwise_cfg")): optimizer.paramwise_cfg: only norm_decay_mult = "
                              + "bias_decay_mult = 0 (no decay on 1-D tensors) or 1 is supported")
        }
        noDecayOn1D = normMult == 0
        noDecayKeys = (c["optimizer.paramwise_cfg.no_decay_keys"]?.arrayValue ?? []).compactMap(\.stringValue)
        if c.has("optimizer_config.grad_clip") {
            gradClip = Float(try c.double("optimizer_config.grad_clip.max_norm"))
        }
        policy = try c.string("lr_config.policy", default: "constant")
        steps = try c.ints("lr_config.step", default: [])
        gamma = try c.double("lr_config.gamma", default: 0.1)
        minLR = try c.double("lr_config.min_lr", default: 0)
        power = try c.double("lr_config.power", default: 1)
        if c["lr_config.warmup"] != nil {
            warmupIters = try c.int("lr_config.warmup_iters", default: 500)
            warmupRatio = try c.double("lr_config.warmup_ratio", default: 0.001)
        }
        byEpoch = try c.string("runner.type") == "EpochBasedRunner"
        if byEpoch { maxEpochs = try c.int("runner.max_epochs") } else { maxItersSetting = try c.int("runner.max_iters") }
        checkpointInterval = try c.int("checkpoint_config.interval", default: 1)
        logInterval = try c.int("log_config.interval", default: 50)
        evalInterval = try c.int("evaluation.interval", default: 1)
        saveBest = try c.optionalString("evaluation.save_best")
    }

    /// Iterations of the whole run.
    public func maxIters(itersPerEpoch: Int) -> Int { byEpoch ? maxEpochs * itersPerEpoch : maxItersSetting }

    /// An interval in iterations.
    public func iterations(_ interval: Int, itersPerEpoch: Int) -> Int { byEpoch ? interval * itersPerEpoch : interval }

    public func schedule(itersPerEpoch: Int) -> LRSchedule {
        let maxIters = self.maxIters(itersPerEpoch: itersPerEpoch)
        let p: LRSchedule.Policy
        switch policy {
        case "step": p = .step(steps: steps.map { iterations($0, itersPerEpoch: itersPerEpoch) }, gamma: gamma)
        case "cosine": p = .cosine(maxIters: maxIters, minLR: minLR)
        case "poly": p = .poly(maxIters: maxIters, power: power, minLR: minLR)
        default: p = .constant
        }
        return LRSchedule(baseLR: lr, policy: p, warmupIters: warmupIters, warmupRatio: warmupRatio)
    }

    public func makeOptimizer(_ model: Module) -> Optimizer {
        let groups = paramGroups(model, weightDecay: Float(weightDecay), noDecayOn1D: noDecayOn1D, noDecayKeys: noDecayKeys)
        if optimizerType == "AdamW" {
            return AdamW(groups, lr: Float(lr), betas: (Float(betas.0), Float(betas.1)), eps: Float(eps))
        }
        return SGD(groups, lr: Float(lr), momentum: Float(momentum), nesterov: nesterov)
    }
}
