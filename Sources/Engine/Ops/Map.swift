/// Elementwise kernels shared by the ops: a new tensor from one, two or three same-sized inputs, split over the
/// cores. Hot ops pass small kernel structs: the generic functions are specialised per struct, so the
/// per-element function is inlined and the loop vectorises. A closure passed through the parallel loop would
/// stay an indirect call per element; the closure forms are for cold paths (losses, rarely used ops).

public protocol UnaryFn { func callAsFunction(_ x: Float) -> Float }
public protocol BinaryFn { func callAsFunction(_ a: Float, _ b: Float) -> Float }
/// Kernels with an eight-lane form as well, for math the compiler does not vectorise from the scalar form.
public protocol VectorUnaryFn: UnaryFn {
    func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float>
    func callAsFunction(_ x: SIMD16<Float>) -> SIMD16<Float>
}
extension VectorUnaryFn {
    @inline(__always) public func callAsFunction(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let (l, h) = halves(x)
        return joined(self(l), self(h))
    }
}
public protocol VectorBinaryFn: BinaryFn { func callAsFunction(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> }
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

/// `map` eight lanes at a time (the scalar form for the tail).
@inline(__always)
func map<K: VectorUnaryFn>(_ a: Tensor, _ k: K) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, y = out.data
    parallelChunks(a.count, cost: 4) { s, e in
        var i = s
        while i + 16 <= e { store16(k(load16(x + i)), y + i); i += 16 }
        while i + 8 <= e { store8(k(load8(x + i)), y + i); i += 8 }
        while i < e { y[i] = k(x[i]); i += 1 }
    }
    return out
}

/// `zipMap` eight lanes at a time.
@inline(__always)
func zipMap<K: VectorBinaryFn>(_ a: Tensor, _ b: Tensor, _ k: K) -> Tensor {
    precondition(a.count == b.count, "zipMap: \(a.shape) vs \(b.shape)")
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, z = b.data, y = out.data
    parallelChunks(a.count, cost: 4) { s, e in
        var i = s
        while i + 8 <= e { store8(k(load8(x + i), load8(z + i)), y + i); i += 8 }
        while i < e { y[i] = k(x[i], z[i]); i += 1 }
    }
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
