/// mmcv's `imnormalize` with the ImageNet statistics mmdet/mmseg configs use (`img_norm_cfg`, RGB order):
/// `(pixel - mean[c]) / std[c]`, written planar (HWC uint8 → CHW float).
public struct Normalize: Sendable {
    public static let imageNetMean: [Float] = [123.675, 116.28, 103.53]
    public static let imageNetStd: [Float] = [58.395, 57.12, 57.375]

    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float] = Normalize.imageNetMean, std: [Float] = Normalize.imageNetStd) {
        precondition(mean.count == 3 && std.count == 3)
        self.mean = mean
        self.std = std
    }

    public func callAsFunction(_ image: Image) -> FloatImage {
        let plane = image.width * image.height
        var data = [Float](repeating: 0, count: 3 * plane)
        let inv = std.map { 1 / $0 }
        image.pixels.withUnsafeBufferPointer { p in
            data.withUnsafeMutableBufferPointer { d in
                for i in 0..<plane {
                    for c in 0..<3 { d[c * plane + i] = (Float(p[3 * i + c]) - mean[c]) * inv[c] }
                }
            }
        }
        return FloatImage(width: image.width, height: image.height, data: data)
    }
}
