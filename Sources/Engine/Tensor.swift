import Foundation

/// An N-dimensional Float32 tensor, contiguous row-major (NCHW for images).
///
/// Reshapes are views sharing `storage`; every other op writes a new tensor. When gradients are enabled and an
/// input requires them, the result records a `Node` on the dynamic tape (define-by-run, as in PyTorch).
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: Storage
    /// Accumulated gradient of a leaf (or of a tensor marked `retainGrad`) after `backward()`.
    public var grad: Tensor?
    /// Leaves that require grad are trainable parameters; set it before using the tensor in ops.
    public var requiresGrad: Bool
    /// The op that produced this tensor, nil for leaves and for tensors made without grad.
    public internal(set) var node: Node?

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var data: UnsafeMutablePointer<Float> { storage.pointer }

    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        precondition(shape.reduce(1, *) == storage.count, "shape \(shape) does not match \(storage.count) elements")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// Uninitialised tensor of `shape`.
    public convenience init(uninitialized shape: [Int]) {
        self.init(shape: shape, storage: Storage(count: shape.reduce(1, *)))
    }

    /// Tensor filled with `value`.
    public convenience init(zeros shape: [Int], value: Float = 0, requiresGrad: Bool = false) {
        self.init(uninitialized: shape)
        fill(value)
        self.requiresGrad = requiresGrad
    }

    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
        self.requiresGrad = requiresGrad
    }

    public convenience init(scalar: Float) { self.init([scalar], shape: []) }

    public static func ones(_ shape: [Int]) -> Tensor { Tensor(zeros: shape, value: 1) }

    /// Values as a Swift array (copies).
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// How many values are NaN or infinite (loaders refuse such weights and inputs).
    public var nonFiniteCount: Int { UnsafeBufferPointer(start: data, count: count).reduce(0) { $1.isFinite ? $0 : $0 + 1 } }

    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item() of a tensor with \(count) elements")
        return data[0]
    }

    public subscript(flat i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// A copy that shares nothing and records nothing.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        let src = data, dst = t.data
        // Split over the cores when large (gradient buffers of megabytes are copied and filled on the backward's
        // critical path; one core does not saturate the memory bus).
        parallelChunks(count, cost: 1, minimum: 1 << 18) { a, b in (dst + a).update(from: src + a, count: b - a) }
        return t
    }

    /// The same values, cut from the tape.
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// Overwrites the values in place (shape must match); records nothing. Used by optimizers and loaders.
    public func assign(_ other: Tensor) {
        precondition(other.shape == shape, "assign: shape \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    public func fill(_ value: Float) {
        let d = data
        parallelChunks(count, cost: 1, minimum: 1 << 18) { a, b in (d + a).update(repeating: value, count: b - a) }
    }

    /// Size of dimension `d` (negative counts from the end).
    public func size(_ d: Int) -> Int { shape[d < 0 ? d + rank : d] }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = array.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(count > 8 ? ", ..." : "")])"
    }
}

/// Row-major strides of `shape`.
@inline(__always)
public func contiguousStrides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
    return s
}
