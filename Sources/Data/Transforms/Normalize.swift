import PixelKernels
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
        precondition(image.pixels.count == 3 * plane, "normalize: \(image.pixels.count) bytes for \(image.width)x\(image.height)")
        image.pixels.withUnsafeBufferPointer { p in
            data.withUnsafeMutableBufferPointer { d in
                normalizeKernel(p.baseAddress!, plane: plane, mean: (mean[0], mean[1], mean[2]),
                                inv: (1 / std[0], 1 / std[1], 1 / std[2]), d.baseAddress!)
            }
        }
        return FloatImage(width: image.width, height: image.height, data: data)
    }
}
