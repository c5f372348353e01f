/// Id -> position for COCO ids. Ids are usually small non-negative integers (COCO image ids < 600k,
/// annotation ids < 2M), so a dense table replaces hashing when it stays within a few times the count;
/// otherwise a dictionary.
public struct COCOIdIndex: Sendable {
    private var dense: [Int32] = []
    private var sparse: [Int: Int] = [:]
    private var isDense: Bool
    public private(set) var count = 0

    /// Builds the index; returns the position of the first repeated id through `duplicate`.
    public init(_ ids: [Int], duplicate: inout Int?) {
        let maxId = ids.max() ?? 0, minId = ids.min() ?? 0
        isDense = minId >= 0 && maxId < 4 * ids.count + (1 << 20)
        if isDense {
            dense = [Int32](repeating: -1, count: maxId + 1)
            for (i, id) in ids.enumerated() {
                if dense[id] >= 0 { duplicate = i; return }
                dense[id] = Int32(i)
            }
        } else {
            sparse.reserveCapacity(ids.count)
            for (i, id) in ids.enumerated() where sparse.updateValue(i, forKey: id) != nil {
                duplicate = i
                return
            }
        }
        count = ids.count
    }

    public subscript(id: Int) -> Int? {
        if isDense {
            guard id >= 0 && id < dense.count else { return nil }
            let p = dense[id]
            return p >= 0 ? Int(p) : nil
        }
        return sparse[id]
    }
}
