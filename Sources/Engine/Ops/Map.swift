/// Elementwise kernels shared by the ops: a new tensor from one or two same-sized inputs, split over the cores.

@inline(__always)
func map(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, y = out.data
    parallelChunks(a.count) { s, e in for i in s..<e { y[i] = f(x[i]) } }
    return out
}

@inline(__always)
func zipMap(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    precondition(a.count == b.count, "zipMap: \(a.shape) vs \(b.shape)")
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, z = b.data, y = out.data
    parallelChunks(a.count) { s, e in for i in s..<e { y[i] = f(x[i], z[i]) } }
    return out
}

@inline(__always)
func zipMap3(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, z = b.data, w = c.data, y = out.data
    parallelChunks(a.count) { s, e in for i in s..<e { y[i] = f(x[i], z[i], w[i]) } }
    return out
}
