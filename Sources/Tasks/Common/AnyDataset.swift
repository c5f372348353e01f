import Data

/// Any dataset of `Item`s behind one type, so tasks, loaders and tools need not be generic over where the data
/// comes from (the dataset registry's builders return these).
public struct AnyDataset<Item: Collatable>: SourceImageDataset {
    public let count: Int
    private let itemAt: @Sendable (Int, inout SplitMix64) throws -> Item
    private let sourceAt: @Sendable (Int) throws -> Image
    /// Index → the id of the image in its annotation file (COCO ids; index + 1 for the shapes writer's files).
    public let imageID: @Sendable (Int) -> Int

    public init<D: SourceImageDataset>(_ d: D, imageID: @escaping @Sendable (Int) -> Int = { $0 + 1 }) where D.Item == Item {
        count = d.count
        itemAt = { try d.item(at: $0, rng: &$1) }
        sourceAt = { try d.sourceImage(at: $0) }
        self.imageID = imageID
    }

    public func item(at index: Int, rng: inout SplitMix64) throws -> Item { try itemAt(index, &rng) }
    public func sourceImage(at index: Int) throws -> Image { try sourceAt(index) }
}
