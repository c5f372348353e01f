/// Counts the floating-point work of a forward pass while `enabled` (`get-flops`), in fvcore's / mmengine's
/// convention (what mmdetection's get_flops reports): one multiply-add is one FLOP; convolutions, deconvolutions,
/// linear layers and matmuls count their multiply-adds; BatchNorm 2 per element (an affine), LayerNorm and GroupNorm
/// 5, adaptive average pooling 1 per input element; ACmix's fused attention and shift paths count the products the
/// authors' unfolded code does. Other elementwise ops, activations, pooling, resizing and post-processing count
/// nothing.
///
/// Each record names the weight tensor its op used, or for ops without one the last weight seen, which lets a tool
/// attribute the work to the modules owning the weights.
public enum FlopCounter {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var records: [(op: String, flops: Int, weight: ObjectIdentifier?)] = []
    nonisolated(unsafe) static var lastWeight: ObjectIdentifier?

    public static func reset() { records = []; lastWeight = nil }

    /// Records `flops` of `op`, charged to `weight` (else to the last weight recorded).
    @inline(__always)
    public static func add(_ op: String, _ flops: Int, weight: Tensor? = nil) {
        guard enabled else { return }
        if let weight { lastWeight = ObjectIdentifier(weight) }
        records.append((op, flops, lastWeight))
    }
}
