import Foundation
import PixelKernels

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
    // Sizes are checked above; the loops run in PixelKernels, without bounds checks.
    if width == 2 * dw && height == 2 * dh {
        // cv::resize turns INTER_LINEAR with integer scale 2 into INTER_AREA: a rounded 2x2 mean.
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in resizeHalfKernel(s.baseAddress!, width: width, channels: channels, d.baseAddress!, dw: dw, dh: dh) }
        }
        return dst
    }
    let ax = LinearAxis(source: width, destination: dw, clampWeights: true)
    let ay = LinearAxis(source: height, destination: dh, clampWeights: false)
    var rows = [Int32](repeating: 0, count: 2 * dw * channels)
    src.withUnsafeBufferPointer { s in
        dst.withUnsafeMutableBufferPointer { d in
            rows.withUnsafeMutableBufferPointer { r in
                resizeBilinearKernel(s.baseAddress!, width: width, channels: channels, d.baseAddress!, dw: dw, dh: dh,
                                     xi0: ax.i0, xi1: ax.i1, xw0: ax.w0, xw1: ax.w1, yi0: ay.i0, yi1: ay.i1, yw0: ay.w0, yw1: ay.w1,
                                     rows: r.baseAddress!)
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
    let ys = (0..<dh).map { min(Int((Double($0) * fy).rounded(.down)), height - 1) }
    var dst = [UInt8](repeating: 0, count: dw * dh * channels)
    src.withUnsafeBufferPointer { s in
        dst.withUnsafeMutableBufferPointer { d in
            resizeNearestKernel(s.baseAddress!, width: width, channels: channels, d.baseAddress!, dw: dw, dh: dh, xs: xs, ys: ys)
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
