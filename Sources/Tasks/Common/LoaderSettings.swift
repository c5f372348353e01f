import Config
import Data
import Training

/// `data.samples_per_gpu` and `data.workers_per_gpu` with the run's `seed`: how every task builds its loaders.
public struct LoaderSettings {
    public var batchSize: Int
    public var workers: Int
    public var seed: UInt64
    /// The `data` section, for errors naming its keys.
    let section: Config

    /// The `data` section's keys shared by every dataset.
    static let fields: [ConfigSchema.Field] = [
        .init("samples_per_gpu", .positiveInt, default: 2), .init("workers_per_gpu", .intRange(0...64), default: 1),
    ]

    /// Reads a `data` section filled with `fields`' defaults.
    init(data c: Config, seed: UInt64) throws {
        batchSize = try c.int("samples_per_gpu")
        workers = try c.int("workers_per_gpu")
        self.seed = seed
        section = c
    }

    /// The training stream: shuffled per epoch from `seed`, incomplete last batch dropped (mmcv's GroupSampler drops
    /// none, but fixed shapes keep iteration counts exact). Refuses a batch larger than the dataset (no batch at all).
    public func trainCursor<D: LoaderDataset>(_ d: D) throws -> BatchCursor<D> where D.Item: Collatable {
        guard d.count > 0 else {
            throw section.fail("dataset", "the training split has no images to train on (COCO: none in the training annotation file has annotations)")
        }
        let cursor = BatchCursor(DataLoader(dataset: d, batchSize: batchSize, shuffle: true, seed: seed, dropLast: true, workers: workers))
        guard cursor.itersPerEpoch > 0 else {
            throw section.fail("samples_per_gpu", "\(batchSize) is more than the \(d.count) training images")
        }
        return cursor
    }

    /// Data-parallel training: shards `cursor` (the training stream of `trainCount` items) to this rank's part of
    /// each batch and returns this rank's part of `valLoader`. The job's batch (`samples_per_gpu` on each process)
    /// must fit in the training set.
    public func shard<T: LoaderDataset, V: LoaderDataset>(_ shard: Shard, trainCount: Int, cursor: BatchCursor<T>,
                            valLoader: DataLoader<V>) throws -> DataLoader<V> {
        guard batchSize * shard.count <= trainCount else {
            throw section.fail("samples_per_gpu", "\(batchSize) per process × \(shard.count) processes is more than the \(trainCount) training images")
        }
        cursor.shard(shard)
        return valLoader.sharded(shard)
    }

    /// In dataset order, every item.
    public func valLoader<D: LoaderDataset>(_ d: D, batchSize: Int? = nil) -> DataLoader<D> where D.Item: Collatable {
        DataLoader(dataset: d, batchSize: batchSize ?? self.batchSize, shuffle: false, seed: seed, workers: workers)
    }
}

/// A training config file for one task: the trainer keys, `model` from the task's model registry and `data` from
/// its dataset registry. Loading merges `_base_` and `--set`, then checks every key before any work.
public protocol TaskConfig {
    /// `model`'s schema (a registry's tagged schema).
    static var modelSchema: ConfigSchema { get }
    /// `data`'s schema.
    static var dataSchema: ConfigSchema { get }
    /// `evaluation.metric`'s schema.
    static var metricSchema: ConfigSchema { get }
    /// Checks the schema cannot express (files that must exist, sizes the model must accept).
    static func check(_ c: Config) throws
}

extension TaskConfig {
    public static var schema: ConfigSchema {
        .object(TrainerSettings.schemaFields(metric: metricSchema)
                + [.init("model", modelSchema, required: true), .init("data", dataSchema, required: true)])
    }

    /// Loads, merges, overrides and validates; every problem is reported naming its file and key.
    public static func load(path: String, overrides: [String] = []) throws -> Config {
        let c = try Config.load(path: path, overrides: overrides)
        try validate(c)
        return c
    }

    /// A config for running a trained model: checked like a training config, but the dataset's files need not exist
    /// (a model-zoo config names COCO or ADE20K folders the user may not have).
    public static func loadForInference(path: String, overrides: [String]) throws -> Config {
        let c = try Config.load(path: path, overrides: overrides)
        try c.validate(schema)
        _ = try TrainerSettings(config: c)
        return c
    }

    public static func validate(_ c: Config) throws {
        try c.validate(schema)
        _ = try TrainerSettings(config: c)
        try check(c)
    }
}
