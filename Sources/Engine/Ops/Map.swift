/// Elementwise kernels shared by the ops: a new tensor from one, two or three same-sized inputs, split over the
/// cores. Hot ops pass small kernel structs: the generic functions are specialised per struct, so the
/// per-element function is inlined and the loop vectorises. A closure passed through the parallel loop would
/// stay an indirect call per element; the closure forms are for cold paths (losses, rarely used ops).

public protocol UnaryFn { func callAsFunction(_ x: Float) -> Float }
public protocol BinaryFn { func callAsFunction(_ a: Float, _ b: Float) -> Float }
public protocol TernaryFn { func callAsFunction(_ a: Float, _ b: Float, _ c: Float) -> Float }

struct UnaryClosure: UnaryFn {
    let f: (Float) -> Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { f(x) }
}
struct BinaryClosure: BinaryFn {
    let f: (Float, Float) -> Float
    @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { f(a, b) }
}
struct TernaryClosure: TernaryFn {
    let f: (Float, Float, Float) -> Float
    @inline(__always) func callAsFunction(_ a: Float, _ b: Float, _ c: Float) -> Float { f(a, b, c) }
}

@inline(__always)
func map<K: UnaryFn>(_ a: Tensor, _ k: K) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, y = out.data
    parallelChunks(a.count) { s, e in for i in s..<e { y[i] = k(x[i]) } }
    return out
}

@inline(__always)
func zipMap<K: BinaryFn>(_ a: Tensor, _ b: Tensor, _ k: K) -> Tensor {
    precondition(a.count == b.count, "zipMap: \(a.shape) vs \(b.shape)")
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, z = b.data, y = out.data
    parallelChunks(a.count) { s, e in for i in s..<e { y[i] = k(x[i], z[i]) } }
    return out
}

@inline(__always)
func zipMap3<K: TernaryFn>(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ k: K) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, z = b.data, w = c.data, y = out.data
    parallelChunks(a.count) { s, e in for i in s..<e { y[i] = k(x[i], z[i], w[i]) } }
    return out
}

func map(_ a: Tensor, _ f: @escaping (Float) -> Float) -> Tensor { map(a, UnaryClosure(f: f)) }
func zipMap(_ a: Tensor, _ b: Tensor, _ f: @escaping (Float, Float) -> Float) -> Tensor { zipMap(a, b, BinaryClosure(f: f)) }
func zipMap3(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: @escaping (Float, Float, Float) -> Float) -> Tensor {
    zipMap3(a, b, c, TernaryClosure(f: f))
}

// Kernels of the hot ops.
struct AddFn: BinaryFn { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
struct SubFn: BinaryFn { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
struct MulFn: BinaryFn { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
struct DivFn: BinaryFn { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
struct SecondFn: BinaryFn { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { b } }
/// x·scale + shift.
struct AffineFn: UnaryFn {
    let scale: Float, shift: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x * scale + shift }
}
