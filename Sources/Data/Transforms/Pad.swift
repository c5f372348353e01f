/// mmcv's `impad` / mmdet's `Pad`: grow to a target size by adding rows at the bottom and columns at the right.
public enum Pad {
    /// The smallest size ≥ (width, height) whose sides are multiples of `divisor` (mmcv `impad_to_multiple`).
    public static func sizeToMultiple(width: Int, height: Int, divisor: Int) -> (width: Int, height: Int) {
        ((width + divisor - 1) / divisor * divisor, (height + divisor - 1) / divisor * divisor)
    }

    /// Pads a CHW float image with `value` (mmdet's image pad value 0, applied after normalisation).
    public static func image(_ image: FloatImage, width: Int, height: Int, value: Float = 0) -> FloatImage {
        precondition(width >= image.width && height >= image.height, "pad size smaller than the image")
        if width == image.width && height == image.height { return image }
        var data = [Float](repeating: value, count: image.channels * width * height)
        for c in 0..<image.channels {
            for y in 0..<image.height {
                let src = (c * image.height + y) * image.width
                let dst = (c * height + y) * width
                data.replaceSubrange(dst..<(dst + image.width), with: image.data[src..<(src + image.width)])
            }
        }
        return FloatImage(channels: image.channels, width: width, height: height, data: data)
    }

    /// Pads a label map with `value` (mmseg's `seg_pad_val` 255 = ignore).
    public static func labels(_ map: LabelMap, width: Int, height: Int, value: UInt8 = LabelMap.ignoreIndex) -> LabelMap {
        precondition(width >= map.width && height >= map.height, "pad size smaller than the label map")
        if width == map.width && height == map.height { return map }
        var out = LabelMap(width: width, height: height, fill: value)
        for y in 0..<map.height {
            out.labels.replaceSubrange((y * width)..<(y * width + map.width),
                                       with: map.labels[(y * map.width)..<((y + 1) * map.width)])
        }
        return out
    }
}
