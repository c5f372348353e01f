/// Small SIMD reductions. Swift does not reassociate float sums, so a plain `acc += a[i] * b[i]` loop stays
/// scalar; these keep eight partial sums in a SIMD register instead.

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

@inline(__always)
func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }

/// The two eight-lane halves of a sixteen-lane vector, and back. The standard library's `lowHalf` / `highHalf` /
/// `init(lowHalf:highHalf:)` stayed generic calls in the hot loops (a call per sixteen floats, the vector spilled to
/// the stack around it); a bit cast is free.
@_transparent
func halves(_ v: SIMD16<Float>) -> (SIMD8<Float>, SIMD8<Float>) { unsafeBitCast(v, to: (SIMD8<Float>, SIMD8<Float>).self) }

@_transparent
func joined(_ low: SIMD8<Float>, _ high: SIMD8<Float>) -> SIMD16<Float> { unsafeBitCast((low, high), to: SIMD16<Float>.self) }

@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self) }

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
        while i + 8 <= n { acc = lanewiseMax(acc, load8(a + i)); i += 8 }
        m = acc[0]
        for l in 1..<8 { m = max(m, acc[l]) }   // SIMD8.max() stayed a generic call
    }
    while i < n { m = max(m, a[i]); i += 1 }
    return m
}

/// Lane-wise maximum as one compare and blend (the standard library's `pointwiseMax` is a generic call per lane).
@inline(__always)
func lanewiseMax(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: b .> a) }

@inline(__always)
func lanewiseMax(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> { a.replacing(with: b, where: b .> a) }

/// a[i] = e^(a[i] − shift), sixteen lanes at a time; returns Σ of the results.
@inline(__always)
func expInPlace(_ a: UnsafeMutablePointer<Float>, _ n: Int, minus shift: Float = 0) -> Float {
    // Each lane is read before it is written, so the out-of-place kernel serves in place.
    expShifted(UnsafePointer(a), a, n, minus: shift)
}

/// y[i] = e^(x[i] − shift), sixteen lanes at a time; returns Σ y.
@inline(__always)
func expShifted(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, minus shift: Float) -> Float {
    var i = 0
    var acc = SIMD16<Float>()
    let m16 = SIMD16<Float>(repeating: shift)
    while i + 16 <= n { let e = fastExp(load16(x + i) - m16); store16(e, y + i); acc += e; i += 16 }
    let (accLow, accHigh) = halves(acc)
    var acc8 = accLow + accHigh
    if i + 8 <= n { let e = fastExp(load8(x + i) - SIMD8(repeating: shift)); store8(e, y + i); acc8 += e; i += 8 }
    var s = acc8.sum()
    while i < n { let e = fastExp(x[i] - shift); y[i] = e; s += e; i += 1 }
    return s
}
