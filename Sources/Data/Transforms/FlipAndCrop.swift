import PixelKernels

/// `rows` rows of `width` pixels mirrored left-right (the size is checked here; the loop runs unchecked).
func flippedRows(_ bytes: [UInt8], rows: Int, width: Int, channels: Int) -> [UInt8] {
    precondition(bytes.count == rows * width * channels, "flip: \(bytes.count) bytes for \(rows)x\(width)x\(channels)")
    var out = [UInt8](repeating: 0, count: bytes.count)
    bytes.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in flipRowsKernel(s.baseAddress!, d.baseAddress!, rows: rows, width: width, channels: channels) }
    }
    return out
}

/// Horizontal flips and numpy-style crops of images and label maps (mmcv `imflip`, `imcrop` on HWC arrays).
public extension Image {
    /// Mirror left-right.
    func flippedHorizontally() -> Image {
        Image(width: width, height: height, pixels: flippedRows(pixels, rows: height, width: width, channels: 3))
    }

    /// Rows `y0..<y1`, columns `x0..<x1` (numpy slicing; bounds are clamped to the image).
    func cropped(x0: Int, y0: Int, x1: Int, y1: Int) -> Image {
        let (xa, xb, ya, yb) = (max(0, x0), min(width, x1), max(0, y0), min(height, y1))
        var out = [UInt8](); out.reserveCapacity((xb - xa) * (yb - ya) * 3)
        for y in ya..<yb { out.append(contentsOf: pixels[((y * width + xa) * 3)..<((y * width + xb) * 3)]) }
        return Image(width: xb - xa, height: yb - ya, pixels: out)
    }
}

public extension LabelMap {
    func flippedHorizontally() -> LabelMap {
        LabelMap(width: width, height: height, labels: flippedRows(labels, rows: height, width: width, channels: 1))
    }

    /// Rows `y0..<y1`, columns `x0..<x1` (numpy slicing; bounds are clamped to the map).
    func cropped(x0: Int, y0: Int, x1: Int, y1: Int) -> LabelMap {
        let (xa, xb, ya, yb) = (max(0, x0), min(width, x1), max(0, y0), min(height, y1))
        var out = [UInt8](); out.reserveCapacity((xb - xa) * (yb - ya))
        for y in ya..<yb { out.append(contentsOf: labels[(y * width + xa)..<(y * width + xb)]) }
        return LabelMap(width: xb - xa, height: yb - ya, labels: out)
    }
}
