/// The pixel loops of the data pipelines, built without bounds or overflow checks (the measured kernels the
/// reliability rules allow): every caller in `Data` validates the sizes first, and these functions only touch
/// `src[0..<width·height·channels]` and `dst[0..<dw·dh·channels]`.

/// cv2.INTER_LINEAR's exact 2x downscale (INTER_AREA): a rounded 2x2 mean.
public func resizeHalfKernel(_ src: UnsafePointer<UInt8>, width: Int, channels: Int, _ dst: UnsafeMutablePointer<UInt8>,
                             dw: Int, dh: Int) {
    for y in 0..<dh {
        for x in 0..<dw {
            for c in 0..<channels {
                let a = Int(src[((2 * y) * width + 2 * x) * channels + c]), b = Int(src[((2 * y) * width + 2 * x + 1) * channels + c])
                let d = Int(src[((2 * y + 1) * width + 2 * x) * channels + c])
                let e = Int(src[((2 * y + 1) * width + 2 * x + 1) * channels + c])
                dst[(y * dw + x) * channels + c] = UInt8((a + b + d + e + 2) >> 2)
            }
        }
    }
}

/// cv2.INTER_LINEAR with 11-bit fixed-point weights: per destination column `xi0/xi1` (source columns) and
/// `xw0/xw1`, per destination row `yi0/yi1` (source rows) and `yw0/yw1`; all indices inside the source.
/// `rows` is scratch for two horizontal passes (2 · dw · channels values).
public func resizeBilinearKernel(_ src: UnsafePointer<UInt8>, width: Int, channels: Int, _ dst: UnsafeMutablePointer<UInt8>,
                                 dw: Int, dh: Int, xi0: UnsafePointer<Int32>, xi1: UnsafePointer<Int32>,
                                 xw0: UnsafePointer<Int32>, xw1: UnsafePointer<Int32>, yi0: UnsafePointer<Int32>,
                                 yi1: UnsafePointer<Int32>, yw0: UnsafePointer<Int32>, yw1: UnsafePointer<Int32>,
                                 rows: UnsafeMutablePointer<Int32>) {
    let rowLength = dw * channels
    var row0 = rows, row1 = rows + rowLength
    var cached0 = -1, cached1 = -1
    func horizontal(_ y: Int, _ row: UnsafeMutablePointer<Int32>) {
        let base = y * width * channels
        for x in 0..<dw {
            let o0 = base + Int(xi0[x]) * channels, o1 = base + Int(xi1[x]) * channels, w0 = xw0[x], w1 = xw1[x]
            for c in 0..<channels { row[x * channels + c] = Int32(src[o0 + c]) * w0 + Int32(src[o1 + c]) * w1 }
        }
    }
    for y in 0..<dh {
        let s0 = Int(yi0[y]), s1 = Int(yi1[y])
        if cached0 != s0 {
            if cached1 == s0 { swap(&row0, &row1); swap(&cached0, &cached1) } else { horizontal(s0, row0); cached0 = s0 }
        }
        if cached1 != s1 { horizontal(s1, row1); cached1 = s1 }
        let b0 = yw0[y], b1 = yw1[y], out = dst + y * rowLength
        for i in 0..<rowLength {
            // OpenCV's VResizeLinearVec_32s8u: mulhi on (S >> 4), then (+2) >> 2.
            let v = ((b0 * (row0[i] >> 4)) >> 16) + ((b1 * (row1[i] >> 4)) >> 16) + 2
            out[i] = UInt8(clamping: v >> 2)
        }
    }
}

/// Interleaved 3-channel bytes → planar floats (x − mean) · inv.
public func normalizeKernel(_ src: UnsafePointer<UInt8>, plane: Int, mean: (Float, Float, Float), inv: (Float, Float, Float),
                            _ dst: UnsafeMutablePointer<Float>) {
    for i in 0..<plane {
        dst[i] = (Float(src[3 * i]) - mean.0) * inv.0
        dst[plane + i] = (Float(src[3 * i + 1]) - mean.1) * inv.1
        dst[2 * plane + i] = (Float(src[3 * i + 2]) - mean.2) * inv.2
    }
}

/// cv2.INTER_NEAREST: destination (x, y) reads source (xs[x], ys[y]), both inside the source.
public func resizeNearestKernel(_ src: UnsafePointer<UInt8>, width: Int, channels: Int, _ dst: UnsafeMutablePointer<UInt8>,
                                dw: Int, dh: Int, xs: UnsafePointer<Int>, ys: UnsafePointer<Int>) {
    for y in 0..<dh {
        let row = src + ys[y] * width * channels, out = dst + y * dw * channels
        if y > 0 && ys[y] == ys[y - 1] {   // the same source row: copy the row just made
            out.update(from: out - dw * channels, count: dw * channels)
            continue
        }
        switch channels {   // constant channel counts let the compiler unroll the inner loop
        case 1: for x in 0..<dw { out[x] = row[xs[x]] }
        case 3: for x in 0..<dw { let o = 3 * x, i = 3 * xs[x]; out[o] = row[i]; out[o + 1] = row[i + 1]; out[o + 2] = row[i + 2] }
        default: for x in 0..<dw { for c in 0..<channels { out[x * channels + c] = row[xs[x] * channels + c] } }
        }
    }
}

/// Mirrors `rows` rows of `width` pixels of `channels` bytes left-right from `src` into `dst`.
public func flipRowsKernel(_ src: UnsafePointer<UInt8>, _ dst: UnsafeMutablePointer<UInt8>, rows: Int, width: Int, channels: Int) {
    for y in 0..<rows {
        let s = src + y * width * channels, d = dst + y * width * channels
        switch channels {   // constant channel counts let the compiler unroll the inner loop
        case 1: for x in 0..<width { d[x] = s[width - 1 - x] }
        case 3: for x in 0..<width { let o = 3 * x, i = 3 * (width - 1 - x); d[o] = s[i]; d[o + 1] = s[i + 1]; d[o + 2] = s[i + 2] }
        default: for x in 0..<width { for c in 0..<channels { d[x * channels + c] = s[(width - 1 - x) * channels + c] } }
        }
    }
}

/// OpenCV's 8-bit RGB→HSV (H in 0..<180) over `pixels` interleaved pixels; `sdiv`/`hdiv` are its 256-entry
/// fixed-point reciprocal tables (12 fractional bits).
public func rgbToHSVKernel(_ src: UnsafePointer<UInt8>, _ dst: UnsafeMutablePointer<UInt8>, pixels: Int,
                           sdiv: UnsafePointer<Int>, hdiv: UnsafePointer<Int>) {
    let shift = 12
    for p in 0..<pixels {
        let i = 3 * p
        let r = Int(src[i]), g = Int(src[i + 1]), b = Int(src[i + 2])
        let v = max(r, g, b), diff = v - min(r, g, b)
        let s = (diff * sdiv[v] + (1 << (shift - 1))) >> shift
        var h: Int
        if v == r { h = g - b } else if v == g { h = b - r + 2 * diff } else { h = r - g + 4 * diff }
        h = (h * hdiv[diff] + (1 << (shift - 1))) >> shift
        if h < 0 { h += 180 }
        dst[i] = UInt8(truncatingIfNeeded: h); dst[i + 1] = UInt8(truncatingIfNeeded: s); dst[i + 2] = UInt8(truncatingIfNeeded: v)
    }
}

/// OpenCV's 8-bit HSV→RGB: float sector formula, then rounding to the nearest byte.
public func hsvToRGBKernel(_ src: UnsafePointer<UInt8>, _ dst: UnsafeMutablePointer<UInt8>, pixels: Int) {
    @inline(__always) func byte(_ x: Float) -> UInt8 { UInt8(min(max((x * 255).rounded(.toNearestOrEven), 0), 255)) }
    for p in 0..<pixels {
        let i = 3 * p
        var h = Float(src[i]) * (6.0 / 180.0)
        let s = Float(src[i + 1]) * (1.0 / 255.0), v = Float(src[i + 2]) * (1.0 / 255.0)
        var (r, g, b) = (v, v, v)
        if s != 0 {
            while h < 0 { h += 6 }
            while h >= 6 { h -= 6 }
            var sector = Int(h.rounded(.down))
            h -= Float(sector)
            if sector < 0 || sector >= 6 { sector = 0; h = 0 }
            let t0 = v, t1 = v * (1 - s), t2 = v * (1 - s * h), t3 = v * (1 - s * (1 - h))
            switch sector {   // OpenCV's sector table: (b, g, r) indices into (t0, t1, t2, t3)
            case 0: (b, g, r) = (t1, t3, t0)
            case 1: (b, g, r) = (t1, t0, t2)
            case 2: (b, g, r) = (t3, t0, t1)
            case 3: (b, g, r) = (t0, t2, t1)
            case 4: (b, g, r) = (t0, t1, t3)
            default: (b, g, r) = (t2, t1, t0)
            }
        }
        dst[i] = byte(r); dst[i + 1] = byte(g); dst[i + 2] = byte(b)
    }
}
