/// Small SIMD reductions. Swift does not reassociate float sums, so a plain `acc += a[i] * b[i]` loop stays
/// scalar; these keep eight partial sums in a SIMD register instead.

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

/// Σ a[i]·b[i]: four 8-float partial sums over blocks of 32 (independent chains hide the FMA latency on long
/// rows), then 8 at a time, then the tail.
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
    var i = 0
    while i + 32 <= n {
        s0 += load8(a + i) * load8(b + i); s1 += load8(a + i + 8) * load8(b + i + 8)
        s2 += load8(a + i + 16) * load8(b + i + 16); s3 += load8(a + i + 24) * load8(b + i + 24)
        i += 32
    }
    while i + 8 <= n { s0 += load8(a + i) * load8(b + i); i += 8 }
    var s = ((s0 + s1) + (s2 + s3)).sum()
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
