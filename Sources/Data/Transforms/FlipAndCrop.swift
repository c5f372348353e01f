/// Horizontal flips and numpy-style crops of images and label maps (mmcv `imflip`, `imcrop` on HWC arrays).
public extension Image {
    /// Mirror left-right.
    func flippedHorizontally() -> Image {
        var out = self
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 { out.pixels[(y * width + x) * 3 + c] = pixels[(y * width + width - 1 - x) * 3 + c] }
            }
        }
        return out
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
        var out = self
        for y in 0..<height { for x in 0..<width { out.labels[y * width + x] = labels[y * width + width - 1 - x] } }
        return out
    }

    /// Rows `y0..<y1`, columns `x0..<x1` (numpy slicing; bounds are clamped to the map).
    func cropped(x0: Int, y0: Int, x1: Int, y1: Int) -> LabelMap {
        let (xa, xb, ya, yb) = (max(0, x0), min(width, x1), max(0, y0), min(height, y1))
        var out = [UInt8](); out.reserveCapacity((xb - xa) * (yb - ya))
        for y in ya..<yb { out.append(contentsOf: labels[(y * width + xa)..<(y * width + xb)]) }
        return LabelMap(width: xb - xa, height: yb - ya, labels: out)
    }
}
