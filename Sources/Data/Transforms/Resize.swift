import Foundation

/// mmcv's `rescale_size`: the factor that fits (w, h) inside `scale` keeping the aspect ratio — the long edge is at
/// most max(scale), the short edge at most min(scale) — and the new size `int(x * factor + 0.5)`.
public func rescaleSize(width: Int, height: Int, scale: (Int, Int)) -> (width: Int, height: Int, factor: Double) {
    let longEdge = Double(max(scale.0, scale.1)), shortEdge = Double(min(scale.0, scale.1))
    let factor = min(longEdge / Double(max(height, width)), shortEdge / Double(min(height, width)))
    return (Int(Double(width) * factor + 0.5), Int(Double(height) * factor + 0.5), factor)
}

/// OpenCV's fixed-point bilinear coefficients for one axis (`cv::resize`, INTER_LINEAR, half-pixel centres):
/// source index pairs and weights scaled by 2^11. OpenCV treats the borders differently per axis: along x an
/// out-of-range position snaps to the edge pixel with weight (1, 0); along y only the row indices are clamped and the
/// fractional weights stay, which changes the rounding of the fixed-point sum (`clampWeights: false`).
private struct LinearAxis {
    var i0: [Int32] = [], i1: [Int32] = [], w0: [Int32] = [], w1: [Int32] = []

    init(source: Int, destination: Int, clampWeights: Bool) {
        let scale = 1.0 / (Double(destination) / Double(source))
        for d in 0..<destination {
            var f = Float((Double(d) + 0.5) * scale - 0.5)
            var s = Int(f.rounded(.down))
            f -= Float(s)
            if clampWeights {
                if s < 0 { f = 0; s = 0 }
                if s >= source - 1 { f = 0; s = source - 1 }
            }
            i0.append(Int32(min(max(s, 0), source - 1)))
            i1.append(Int32(min(max(s + 1, 0), source - 1)))
            w0.append(Int32(((1 - f) * 2048).rounded(.toNearestOrEven)))
            w1.append(Int32((f * 2048).rounded(.toNearestOrEven)))
        }
    }
}

/// Bilinear resize with cv2.INTER_LINEAR semantics for 8-bit images (what mmcv's `imresize(..., 'bilinear')` calls):
/// half-pixel centres, 11-bit fixed-point weights, OpenCV's SSE rounding of the vertical pass, and OpenCV's switch to
/// area averaging for an exact 2x downscale. `channels` interleaved bytes per pixel; returns `height*width*channels`.
public func resizeBilinear(_ src: [UInt8], width: Int, height: Int, channels: Int,
                           toWidth dw: Int, toHeight dh: Int) -> [UInt8] {
    precondition(src.count == width * height * channels && dw > 0 && dh > 0)
    if dw == width && dh == height { return src }
    var dst = [UInt8](repeating: 0, count: dw * dh * channels)
    if width == 2 * dw && height == 2 * dh {
        // cv::resize turns INTER_LINEAR with integer scale 2 into INTER_AREA: a rounded 2x2 mean.
        for y in 0..<dh {
            for x in 0..<dw {
                for c in 0..<channels {
                    let a = Int(src[((2 * y) * width + 2 * x) * channels + c])
                    let b = Int(src[((2 * y) * width + 2 * x + 1) * channels + c])
                    let d = Int(src[((2 * y + 1) * width + 2 * x) * channels + c])
                    let e = Int(src[((2 * y + 1) * width + 2 * x + 1) * channels + c])
                    dst[(y * dw + x) * channels + c] = UInt8((a + b + d + e + 2) >> 2)
                }
            }
        }
        return dst
    }
    let ax = LinearAxis(source: width, destination: dw, clampWeights: true)
    let ay = LinearAxis(source: height, destination: dh, clampWeights: false)
    let rowLength = dw * channels
    // Horizontal pass of one source row: values scaled by 2^11.
    func horizontal(_ y: Int, into row: inout [Int32]) {
        src.withUnsafeBufferPointer { s in
            let base = y * width * channels
            for x in 0..<dw {
                let o0 = base + Int(ax.i0[x]) * channels, o1 = base + Int(ax.i1[x]) * channels
                for c in 0..<channels {
                    row[x * channels + c] = Int32(s[o0 + c]) * ax.w0[x] + Int32(s[o1 + c]) * ax.w1[x]
                }
            }
        }
    }
    var row0 = [Int32](repeating: 0, count: rowLength), row1 = row0
    var cached0 = -1, cached1 = -1
    dst.withUnsafeMutableBufferPointer { out in
        for y in 0..<dh {
            let s0 = Int(ay.i0[y]), s1 = Int(ay.i1[y])
            if cached0 != s0 {
                if cached1 == s0 { swap(&row0, &row1); swap(&cached0, &cached1) } else { horizontal(s0, into: &row0); cached0 = s0 }
            }
            if cached1 != s1 { horizontal(s1, into: &row1); cached1 = s1 }
            let b0 = ay.w0[y], b1 = ay.w1[y]
            for i in 0..<rowLength {
                // OpenCV's VResizeLinearVec_32s8u: mulhi on (S >> 4), then (+2) >> 2.
                let v = ((b0 * (row0[i] >> 4)) >> 16) + ((b1 * (row1[i] >> 4)) >> 16) + 2
                out[y * rowLength + i] = UInt8(clamping: v >> 2)
            }
        }
    }
    return dst
}

/// Nearest-neighbour resize with cv2.INTER_NEAREST semantics (source index `floor(d * src / dst)`), for label maps and
/// instance masks whose values must not be blended.
public func resizeNearest(_ src: [UInt8], width: Int, height: Int, channels: Int = 1,
                          toWidth dw: Int, toHeight dh: Int) -> [UInt8] {
    precondition(src.count == width * height * channels && dw > 0 && dh > 0)
    if dw == width && dh == height { return src }
    let fx = 1.0 / (Double(dw) / Double(width)), fy = 1.0 / (Double(dh) / Double(height))
    let xs = (0..<dw).map { min(Int((Double($0) * fx).rounded(.down)), width - 1) }
    var dst = [UInt8](repeating: 0, count: dw * dh * channels)
    for y in 0..<dh {
        let sy = min(Int((Double(y) * fy).rounded(.down)), height - 1)
        for x in 0..<dw {
            for c in 0..<channels { dst[(y * dw + x) * channels + c] = src[(sy * width + xs[x]) * channels + c] }
        }
    }
    return dst
}

public extension Image {
    /// Bilinear (cv2.INTER_LINEAR) resize to exactly `width` x `height`.
    func resized(width: Int, height: Int) -> Image {
        Image(width: width, height: height,
              pixels: resizeBilinear(pixels, width: self.width, height: self.height, channels: 3, toWidth: width,
                                     toHeight: height))
    }
}

public extension LabelMap {
    /// Nearest (cv2.INTER_NEAREST) resize to exactly `width` x `height`.
    func resized(width: Int, height: Int) -> LabelMap {
        LabelMap(width: width, height: height,
                 labels: resizeNearest(labels, width: self.width, height: self.height, toWidth: width, toHeight: height))
    }
}
