/// Small SIMD reductions. Swift does not reassociate float sums, so a plain `acc += a[i] * b[i]` loop stays
/// scalar; these keep eight partial sums in a SIMD register instead.

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

/// Σ a[i]·b[i].
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= n { acc += load8(a + i) * load8(b + i); i += 8 }
    var s = acc.sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// Σ a[i].
@inline(__always)
public func sum(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= n { acc += load8(a + i); i += 8 }
    var s = acc.sum()
    while i < n { s += a[i]; i += 1 }
    return s
}

/// Σ (a[i] − m)².
@inline(__always)
public func sumSquaredDeviation(_ a: UnsafePointer<Float>, _ m: Float, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    let mv = SIMD8<Float>(repeating: m)
    var i = 0
    while i + 8 <= n { let d = load8(a + i) - mv; acc += d * d; i += 8 }
    var s = acc.sum()
    while i < n { s += (a[i] - m) * (a[i] - m); i += 1 }
    return s
}

/// max(a[0..<n]) (n ≥ 1).
@inline(__always)
public func maxElement(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
    var i = 0
    var m = a[0]
    if n >= 8 {
        var acc = load8(a)
        i = 8
        while i + 8 <= n { acc = pointwiseMax(acc, load8(a + i)); i += 8 }
        m = acc.max()
    }
    while i < n { m = max(m, a[i]); i += 1 }
    return m
}
