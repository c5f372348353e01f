import Data

/// The training batch stream of a task: iteration i's batch is batch i mod (batches per epoch) of epoch
/// i / (batches per epoch), so it is a pure function of (seed, iteration) and resuming anywhere repositions the
/// loader there.
public final class BatchCursor<D: LoaderDataset> where D.Item: Collatable {
    public private(set) var loader: DataLoader<D>
    private var iterator: DataLoader<D>.EpochIterator?
    private var expected = -1

    public init(_ loader: DataLoader<D>) { self.loader = loader }

    public var itersPerEpoch: Int { loader.batchesPerEpoch }

    /// From now on, this rank's part of each batch of a data-parallel job (iterations per epoch are the job's).
    public func shard(_ shard: Shard) {
        loader = loader.sharded(shard)
        iterator = nil
        expected = -1
    }

    /// Starts prefetching at `iteration`.
    public func position(at iteration: Int) {
        iterator = loader.epoch(iteration / itersPerEpoch, startingAt: iteration % itersPerEpoch)
        expected = iteration
    }

    /// The batch of `iteration` (consecutive calls stream; any other order repositions).
    public func batch(_ iteration: Int) throws -> Batch<D.Item> {
        if iteration != expected || iterator == nil { position(at: iteration) }
        guard let batch = try iterator!.next() else {
            throw KitError.data("the loader ran out inside epoch \(iteration / itersPerEpoch) (dataset of \(loader.dataset.count) items)")
        }
        expected = iteration + 1
        if expected % itersPerEpoch == 0 { iterator = nil }   // the next epoch starts a fresh iterator
        return batch
    }
}
