import Engine
import Foundation

/// A random-access dataset for `DataLoader`. `item(at:rng:)` must be a pure function of the index and the generator
/// it is handed, so that batches do not depend on which worker thread produced them.
public protocol LoaderDataset: Sendable {
    associatedtype Item: Sendable
    var count: Int { get }
    func item(at index: Int, rng: inout SplitMix64) throws -> Item
}

/// A dataset that can hand out an item's image as stored, before its pipeline: what visualisations draw on.
public protocol SourceImageDataset: LoaderDataset {
    func sourceImage(at index: Int) throws -> Image
}

/// What the collate step needs from a pipeline output: the CHW image and, for segmentation, the label map.
public protocol Collatable: Sendable {
    var collateImage: FloatImage { get }
    var collateLabel: LabelMap? { get }
}

extension DetectionInput: Collatable {
    public var collateImage: FloatImage { image }
    public var collateLabel: LabelMap? { nil }
}

extension SegmentationInput: Collatable {
    public var collateImage: FloatImage { image }
    public var collateLabel: LabelMap? { label }
}

/// One mini-batch as plain arrays (the task turns them into engine tensors).
public struct Batch<Item: Collatable>: Sendable {
    /// Dataset indices of the samples, in batch order.
    public var indices: [Int]
    /// NCHW, shape `[N, 3, H, W]` with H, W the largest in the batch; padding is 0 at the bottom/right.
    public var images: [Float]
    public var shape: [Int]
    /// NHW label maps padded with 255 at the bottom/right, shape `labelShape`; present when any item carries a label
    /// (segmentation), with an item that has none left all 255.
    public var labels: [UInt8]?
    /// `[N, Hl, Wl]` with Hl, Wl the largest label map height and width in the batch, independent of `shape`: in
    /// training labels are cropped/padded with their images, but in test mode a label keeps its original size while
    /// its image is resized. Nil when `labels` is.
    public var labelShape: [Int]?
    /// Per-image targets and meta; each item's own `image` is left at its unpadded size.
    public var items: [Item]

    /// mmcv `collate` with `pad_size_divisor=1`: pad every image to the batch's max height and width, and every
    /// label map to the batch's max label height and width.
    public init(indices: [Int], items: [Item]) {
        precondition(!items.isEmpty, "empty batch")
        let c = items[0].collateImage.channels
        let h = items.map(\.collateImage.height).max()!, w = items.map(\.collateImage.width).max()!
        var images = [Float](repeating: 0, count: items.count * c * h * w)
        for (n, item) in items.enumerated() {
            let img = item.collateImage
            precondition(img.channels == c, "images in a batch need the same channel count")
            for ch in 0..<c {
                for y in 0..<img.height {
                    let src = (ch * img.height + y) * img.width, dst = ((n * c + ch) * h + y) * w
                    images.replaceSubrange(dst..<(dst + img.width), with: img.data[src..<(src + img.width)])
                }
            }
        }
        let maps = items.map(\.collateLabel)
        if maps.contains(where: { $0 != nil }) {
            let lh = maps.map { $0?.height ?? 0 }.max()!, lw = maps.map { $0?.width ?? 0 }.max()!
            var labels = [UInt8](repeating: 255, count: items.count * lh * lw)
            for (n, map) in maps.enumerated() {
                guard let map else { continue }
                for y in 0..<map.height {
                    let dst = (n * lh + y) * lw
                    labels.replaceSubrange(dst..<(dst + map.width), with: map.labels[(y * map.width)..<((y + 1) * map.width)])
                }
            }
            self.labels = labels
            self.labelShape = [items.count, lh, lw]
        } else {
            self.labels = nil
            self.labelShape = nil
        }
        self.indices = indices
        self.images = images
        self.shape = [items.count, c, h, w]
        self.items = items
    }
}

/// One process's part of a data-parallel job: rank `rank` of `count`.
public struct Shard: Sendable, Equatable {
    public var rank: Int
    public var count: Int
    public init(rank: Int, count: Int) {
        precondition(count >= 1 && rank >= 0 && rank < count, "shard \(rank) of \(count)")
        self.rank = rank; self.count = count
    }
    /// A single process: everything.
    public static let whole = Shard(rank: 0, count: 1)
}

/// Batches a dataset with per-epoch seeded shuffling and background prefetching.
///
/// Determinism: epoch `e`'s order is a Fisher–Yates shuffle drawn from `SplitMix64(seed, stream: e)`, and sample `i`
/// of epoch `e` gets its own generator `SplitMix64(seed, stream: e + 1 << 32, index: i)`. Workers take whole batches
/// and the consumer receives them strictly in order, so the output is the same for any worker count or timing.
///
/// Sharded (data-parallel, mmdet's distributed sampler): batch b of the job is the `batchSize × shard.count` samples
/// of the epoch order from b·batchSize·count, and rank r takes the r-th `batchSize` of them. The union over the ranks
/// is then what one process with batch `batchSize × count` sees, a function of (seed, epoch, batch, count) only.
public final class DataLoader<Dataset: LoaderDataset>: @unchecked Sendable where Dataset.Item: Collatable {
    public let dataset: Dataset
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let dropLast: Bool
    /// Background threads; 0 builds batches on the caller's thread.
    public let workers: Int
    /// Batches that may be finished ahead of the consumer.
    public let prefetch: Int
    /// This process's part of each batch (`whole` in one process).
    public let shard: Shard

    public init(dataset: Dataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0, dropLast: Bool = false,
                workers: Int = 1, prefetch: Int = 2, shard: Shard = .whole) {
        precondition(batchSize > 0 && workers >= 0 && prefetch >= 1)
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.workers = workers
        self.prefetch = prefetch
        self.shard = shard
    }

    /// The same loader taking `shard`'s part of each batch.
    public func sharded(_ shard: Shard) -> DataLoader {
        DataLoader(dataset: dataset, batchSize: batchSize, shuffle: shuffle, seed: seed, dropLast: dropLast, workers: workers,
                   prefetch: prefetch, shard: shard)
    }

    /// Samples per batch of the whole job.
    var jobBatch: Int { batchSize * shard.count }

    /// This process's batches per epoch: with `dropLast`, the job's full batches (the same on every rank); without,
    /// the batches in which this rank's part is not empty.
    public var batchesPerEpoch: Int {
        if dropLast { return dataset.count / jobBatch }
        let first = shard.rank * batchSize
        return dataset.count > first ? (dataset.count - first + jobBatch - 1) / jobBatch : 0
    }

    /// The sample order of an epoch.
    public func order(epoch: Int) -> [Int] {
        var indices = Array(0..<dataset.count)
        guard shuffle else { return indices }
        var rng = SplitMix64(seed: seed, stream: UInt64(epoch))
        for i in stride(from: indices.count - 1, to: 0, by: -1) { indices.swapAt(i, rng.randint(0, i + 1)) }
        return indices
    }

    /// Builds batch `b` of an epoch order (on whichever thread calls it).
    func makeBatch(_ b: Int, order: [Int], epoch: Int) throws -> Batch<Dataset.Item> {
        let start = b * jobBatch + shard.rank * batchSize
        let indices = Array(order[start..<min(order.count, start + batchSize)])
        let items = try indices.map { i -> Dataset.Item in
            var rng = SplitMix64(seed: seed, stream: UInt64(epoch) + (1 << 32), index: UInt64(i))
            return try dataset.item(at: i, rng: &rng)
        }
        return Batch(indices: indices, items: items)
    }

    /// Starts producing epoch `epoch`'s batches from batch `startingAt` (resuming mid-epoch builds nothing before
    /// it); iterate the result with `next()`.
    public func epoch(_ epoch: Int, startingAt first: Int = 0) -> EpochIterator {
        EpochIterator(loader: self, epoch: epoch, first: first)
    }

    /// Yields one epoch's batches in order. Dropping it stops its workers after their current batch.
    public final class EpochIterator {
        private let state: PrefetchState<Batch<Dataset.Item>>
        private let loader: DataLoader
        private let order: [Int]
        private let epoch: Int
        private var nextBatch = 0

        init(loader: DataLoader, epoch: Int, first: Int = 0) {
            self.loader = loader
            self.epoch = epoch
            order = loader.order(epoch: epoch)
            let total = loader.batchesPerEpoch
            precondition(first >= 0 && first <= total, "epoch start batch \(first) outside 0...\(total)")
            nextBatch = first
            state = PrefetchState(total: total, window: loader.prefetch, first: first)
            let (state, order) = (state, order)
            for w in 0..<min(loader.workers, total - first) {
                // Serially: a worker overlaps the training step on a thread of its own; it does not take the engine's
                // pool (and its threads) away from the step.
                let thread = Thread {
                    serially {
                        while let b = state.claim() {
                            let result = Result { try loader.makeBatch(b, order: order, epoch: epoch) }
                            state.deliver(b, result)
                        }
                    }
                }
                thread.name = "DataLoader worker \(w)"
                thread.start()
            }
        }

        deinit { state.cancel() }

        /// The next batch, or nil at the end of the epoch. Rethrows a dataset error for the batch it belongs to.
        public func next() throws -> Batch<Dataset.Item>? {
            guard nextBatch < loader.batchesPerEpoch else { return nil }
            defer { nextBatch += 1 }
            if loader.workers == 0 { return try loader.makeBatch(nextBatch, order: order, epoch: epoch) }
            return try state.take(nextBatch).get()
        }
    }
}

/// The bounded hand-off between workers and the consumer: workers claim batch numbers in order but no more than
/// `window` ahead of the consumer; finished batches wait in a dictionary until their turn.
final class PrefetchState<Value>: @unchecked Sendable {
    private let condition = NSCondition()
    private let total: Int
    private let window: Int
    private var claimed = 0
    private var consumed = 0
    private var cancelled = false
    private var ready: [Int: Result<Value, Error>] = [:]

    init(total: Int, window: Int, first: Int = 0) {
        self.total = total
        self.window = window
        claimed = first
        consumed = first
    }

    /// The next batch number to build, blocking while the window is full; nil when done or cancelled.
    func claim() -> Int? {
        condition.lock()
        defer { condition.unlock() }
        while !cancelled && claimed < total && claimed >= consumed + window { condition.wait() }
        guard !cancelled && claimed < total else { return nil }
        claimed += 1
        return claimed - 1
    }

    func deliver(_ b: Int, _ value: Result<Value, Error>) {
        condition.lock()
        ready[b] = value
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until batch `b` is ready, then hands it over and opens the window by one.
    func take(_ b: Int) -> Result<Value, Error> {
        condition.lock()
        defer { condition.unlock() }
        while ready[b] == nil { condition.wait() }
        let value = ready.removeValue(forKey: b)!
        consumed = b + 1
        condition.broadcast()
        return value
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}
