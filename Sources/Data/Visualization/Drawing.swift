import Foundation

/// Drawing into RGB images for the tools' visualisations (`--show-dir`) and plots. Everything clips to the image.
public typealias RGB = (UInt8, UInt8, UInt8)

extension Image {
    public mutating func setPixel(x: Int, y: Int, _ c: RGB) {
        guard x >= 0 && x < width && y >= 0 && y < height else { return }
        let i = (y * width + x) * Image.channels
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    /// A one-pixel Bresenham line from (xa, ya) to (xb, yb), both ends included.
    public mutating func drawLine(_ xa: Int, _ ya: Int, _ xb: Int, _ yb: Int, _ c: RGB) {
        var (x, y) = (xa, ya)
        let dx = abs(xb - xa), dy = -abs(yb - ya), sx = xa < xb ? 1 : -1, sy = ya < yb ? 1 : -1
        var err = dx + dy
        while true {
            setPixel(x: x, y: y, c)
            if x == xb && y == yb { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    /// Fills the pixels x0..<x1 × y0..<y1.
    public mutating func fillRect(x0: Int, y0: Int, x1: Int, y1: Int, _ c: RGB) {
        for y in max(0, y0)..<max(max(0, y0), min(height, y1)) {
            for x in max(0, x0)..<max(max(0, x0), min(width, x1)) { setPixel(x: x, y: y, c) }
        }
    }

    /// The outline of the box with corners (x0, y0) and (x1, y1), `thickness` pixels drawn inwards.
    public mutating func drawRect(x0: Int, y0: Int, x1: Int, y1: Int, _ c: RGB, thickness: Int = 1) {
        for t in 0..<max(1, thickness) {
            let (l, r, top, b) = (x0 + t, x1 - t, y0 + t, y1 - t)
            guard l <= r && top <= b else { break }
            drawLine(l, top, r, top, c); drawLine(l, b, r, b, c)
            drawLine(l, top, l, b, c); drawLine(r, top, r, b, c)
        }
    }

    /// Draws `text` with its top-left corner at (x, y) in the 5×7 bitmap font, each font pixel `scale`² pixels; with
    /// `background`, on a filled box one pixel larger all round.
    public mutating func drawText(_ text: String, x: Int, y: Int, _ c: RGB, scale: Int = 1, background: RGB? = nil) {
        if let bg = background {
            fillRect(x0: x - 1, y0: y - 1, x1: x + BitmapFont.width(of: text, scale: scale) + 1,
                     y1: y + BitmapFont.glyphHeight * scale + 1, bg)
        }
        for (k, ch) in text.enumerated() {
            let rows = BitmapFont.rows(ch), gx = x + k * BitmapFont.advance * scale
            for (r, bits) in rows.enumerated() {
                for col in 0..<BitmapFont.glyphWidth where bits & (1 << (BitmapFont.glyphWidth - 1 - col)) != 0 {
                    fillRect(x0: gx + col * scale, y0: y + r * scale, x1: gx + (col + 1) * scale, y1: y + (r + 1) * scale, c)
                }
            }
        }
    }

    /// mmseg's `show_result`: each labelled pixel becomes `(1 − opacity)·image + opacity·palette[label]`; pixels whose
    /// label has no palette entry (255 = ignore) keep the image. `labels` must have the image's size.
    public func blended(with labels: LabelMap, palette: [RGB], opacity: Float = 0.5) -> Image {
        precondition(labels.width == width && labels.height == height, "overlay: labels \(labels.width)×\(labels.height) for image \(width)×\(height)")
        var out = self
        for i in 0..<(width * height) {
            let l = Int(labels.labels[i])
            guard l < palette.count else { continue }
            let p = palette[l], base = i * Image.channels
            for (ch, v) in [p.0, p.1, p.2].enumerated() {
                out.pixels[base + ch] = UInt8((Float(pixels[base + ch]) * (1 - opacity) + Float(v) * opacity).rounded())
            }
        }
        return out
    }
}

/// Class colours for visualisations: a fixed list of well-separated colours, then deterministic pseudo-random ones.
public enum Palette {
    static let base: [RGB] = [
        (220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 165, 0), (145, 30, 180), (70, 240, 240), (240, 50, 230),
        (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128), (128, 128, 0), (250, 190, 212),
        (255, 225, 25), (0, 0, 230),
    ]

    /// `count` colours; with `background`, class 0 is black (the shapes dataset's background) and the rest follow.
    public static func colours(_ count: Int, background: Bool = false) -> [RGB] {
        var rng = SplitMix64(seed: 42)
        var out: [RGB] = background ? [(0, 0, 0)] : []
        var k = 0
        while out.count < count {
            if k < base.count { out.append(base[k]) } else {
                out.append((UInt8(rng.randint(0, 256)), UInt8(rng.randint(0, 256)), UInt8(rng.randint(0, 256))))
            }
            k += 1
        }
        return out
    }
}

extension Image {
    /// mmdet's `show_result` for boxes: every detection scoring at least `scoreThreshold` as a class-coloured
    /// rectangle with a "name score" caption above it (inside the box when there is no room above), over its mask
    /// blended in the same colour (opacity 0.5) when `masks` (row-major 0/1, this image's size) are given.
    /// `boxes` is flat [x1, y1, x2, y2] per detection in this image's pixels; `labels` index `classNames`. Ground
    /// truth is drawn with scores 1 and `captionScores` false (captions without a score).
    public func drawingDetections(boxes: [Float], scores: [Float], labels: [Int], classNames: [String],
                                  scoreThreshold: Float = 0.3, palette: [RGB]? = nil, masks: [[UInt8]]? = nil,
                                  captionScores: Bool = true) -> Image {
        precondition(boxes.count == 4 * scores.count && labels.count == scores.count, "drawDetections: mismatched arrays")
        precondition(masks.map { $0.count == scores.count && $0.allSatisfy { $0.count == width * height } } ?? true,
                     "drawDetections: one image-sized mask per detection")
        let colours = palette ?? Palette.colours(max(classNames.count, (labels.max() ?? 0) + 1))
        var out = self
        if let masks {
            for k in scores.indices.sorted(by: { scores[$0] < scores[$1] }) where scores[k] >= scoreThreshold {
                let c = colours[labels[k] % colours.count]
                for (i, v) in masks[k].enumerated() where v != 0 {
                    for (ch, value) in [c.0, c.1, c.2].enumerated() {
                        let p = i * Image.channels + ch
                        out.pixels[p] = UInt8((Float(out.pixels[p]) + Float(value)) / 2)
                    }
                }
            }
        }
        // Lowest score first, so the most confident boxes end up on top.
        for k in scores.indices.sorted(by: { scores[$0] < scores[$1] }) where scores[k] >= scoreThreshold {
            let b = boxes[(4 * k)..<(4 * k + 4)].map { Int($0.rounded()) }
            let c = colours[labels[k] % colours.count]
            out.drawRect(x0: b[0], y0: b[1], x1: b[2], y1: b[3], c, thickness: 2)
            let name = labels[k] < classNames.count ? classNames[labels[k]] : String(labels[k])
            let caption = captionScores ? "\(name) \(String(format: "%.2f", scores[k]))" : name
            let y = b[1] - BitmapFont.glyphHeight - 3 >= 0 ? b[1] - BitmapFont.glyphHeight - 2 : b[1] + 3
            out.drawText(caption, x: max(0, b[0]) + 1, y: y, (255, 255, 255), background: c)
        }
        return out
    }
}
