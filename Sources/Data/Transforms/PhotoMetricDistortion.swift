import PixelKernels
/// mmseg's `PhotoMetricDistortion`, applied to 8-bit RGB with each step clipping back to uint8:
/// brightness (+U(−32, 32)), contrast (×U(0.5, 1.5)) either second (mode 0) or last (mode 1), saturation
/// (S ×U(0.5, 1.5) in OpenCV's 8-bit HSV), hue (H + randint(−18, 18) mod 180). Each step fires with probability 1/2.
/// The random draws happen in mmseg's order so a seed fixes the whole sequence.
public struct PhotoMetricDistortion: Sendable {
    public var brightnessDelta = 32
    public var contrastRange = (lower: 0.5, upper: 1.5)
    public var saturationRange = (lower: 0.5, upper: 1.5)
    public var hueDelta = 18

    public init() {}

    public func callAsFunction(_ image: Image, rng: inout SplitMix64) -> Image {
        var img = image
        // brightness
        if rng.randint(0, 2) == 1 {
            let beta = rng.uniform(Double(-brightnessDelta), Double(brightnessDelta))
            convert(&img.pixels, alpha: 1, beta: beta)
        }
        let mode = rng.randint(0, 2)
        if mode == 1 { contrast(&img, rng: &rng) }
        // saturation
        if rng.randint(0, 2) == 1 {
            let alpha = rng.uniform(saturationRange.lower, saturationRange.upper)
            withHSV(&img) { hsv in
                for i in stride(from: 1, to: hsv.count, by: 3) {
                    hsv[i] = UInt8(min(max(Double(Float(hsv[i]) * Float(alpha)), 0), 255))
                }
            }
        }
        // hue
        if rng.randint(0, 2) == 1 {
            let delta = rng.randint(-hueDelta, hueDelta)
            withHSV(&img) { hsv in
                for i in stride(from: 0, to: hsv.count, by: 3) { hsv[i] = UInt8(((Int(hsv[i]) + delta) % 180 + 180) % 180) }
            }
        }
        if mode == 0 { contrast(&img, rng: &rng) }
        return img
    }

    private func contrast(_ img: inout Image, rng: inout SplitMix64) {
        if rng.randint(0, 2) == 1 {
            convert(&img.pixels, alpha: rng.uniform(contrastRange.lower, contrastRange.upper), beta: 0)
        }
    }

    /// mmseg `convert`: float32 `x * alpha + beta`, clipped to [0, 255], truncated to uint8.
    private func convert(_ pixels: inout [UInt8], alpha: Double, beta: Double) {
        let a = Float(alpha), b = Float(beta)
        for i in pixels.indices { pixels[i] = UInt8(min(max(Float(pixels[i]) * a + b, 0), 255)) }
    }

    private func withHSV(_ img: inout Image, _ body: (inout [UInt8]) -> Void) {
        var hsv = rgbToHSV(img.pixels)
        body(&hsv)
        img.pixels = hsvToRGB(hsv)
    }
}

/// OpenCV's 8-bit RGB→HSV (`cv::cvtColor`, H in [0, 180), S and V in [0, 255]), with its fixed-point tables.
public func rgbToHSV(_ rgb: [UInt8]) -> [UInt8] {
    precondition(rgb.count % 3 == 0, "rgbToHSV: \(rgb.count) bytes are not whole pixels")
    let shift = 12
    let sdiv = (0..<256).map { $0 == 0 ? 0 : Int((Double(255 << shift) / Double($0)).rounded()) }
    let hdiv = (0..<256).map { $0 == 0 ? 0 : Int((Double(180 << shift) / (6.0 * Double($0))).rounded()) }
    var out = [UInt8](repeating: 0, count: rgb.count)
    rgb.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in rgbToHSVKernel(s.baseAddress!, d.baseAddress!, pixels: rgb.count / 3, sdiv: sdiv, hdiv: hdiv) }
    }
    return out
}

/// OpenCV's 8-bit HSV→RGB: float sector formula, then rounding to the nearest byte.
public func hsvToRGB(_ hsv: [UInt8]) -> [UInt8] {
    precondition(hsv.count % 3 == 0, "hsvToRGB: \(hsv.count) bytes are not whole pixels")
    var out = [UInt8](repeating: 0, count: hsv.count)
    hsv.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in hsvToRGBKernel(s.baseAddress!, d.baseAddress!, pixels: hsv.count / 3) }
    }
    return out
}
