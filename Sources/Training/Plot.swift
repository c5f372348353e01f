import Data
import Foundation

/// A small line chart drawn straight into an RGB `Image`: one panel per series group, axes and lines only.
public struct LinePlot {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var colour: (UInt8, UInt8, UInt8)
        public init(name: String, points: [(x: Double, y: Double)], colour: (UInt8, UInt8, UInt8)) {
            self.name = name; self.points = points; self.colour = colour
        }
    }

    public var width = 800, panelHeight = 260, margin = 30

    public init() {}

    /// Stacks one panel per entry of `panels` (each with its own y range) sharing the x range.
    public func render(_ panels: [[Series]]) -> Image {
        let height = panelHeight * max(1, panels.count)
        var img = Image(width: width, height: height, fill: (255, 255, 255))
        let allX = panels.flatMap { $0.flatMap { $0.points.map(\.x) } }
        let (x0, x1) = (allX.min() ?? 0, max((allX.max() ?? 1), (allX.min() ?? 0) + 1e-9))
        for (p, series) in panels.enumerated() {
            let top = p * panelHeight + margin / 2, bottom = (p + 1) * panelHeight - margin / 2
            let left = margin, right = width - margin / 2
            let ys = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
            var (y0, y1) = (min(ys.min() ?? 0, 0), ys.max() ?? 1)
            if y1 <= y0 { y1 = y0 + 1 }
            y1 += (y1 - y0) * 0.05
            if y0 < 0 { y0 -= (y1 - y0) * 0.05 }
            line(&img, left, bottom, right, bottom, (0, 0, 0))
            line(&img, left, top, left, bottom, (0, 0, 0))
            for t in 1...4 {   // light horizontal grid
                let y = bottom - (bottom - top) * t / 4
                line(&img, left + 1, y, right, y, (225, 225, 225))
            }
            for s in series {
                func px(_ pt: (x: Double, y: Double)) -> (Int, Int) {
                    (left + Int((pt.x - x0) / (x1 - x0) * Double(right - left)),
                     bottom - Int((pt.y - y0) / (y1 - y0) * Double(bottom - top)))
                }
                let pts = s.points.filter { $0.y.isFinite }
                for (a, b) in zip(pts, pts.dropFirst()) {
                    let (ax, ay) = px(a), (bx, by) = px(b)
                    line(&img, ax, ay, bx, by, s.colour)
                }
                if pts.count == 1 { let (ax, ay) = px(pts[0]); line(&img, ax - 2, ay, ax + 2, ay, s.colour) }
            }
        }
        return img
    }

    /// Bresenham line, clipped to the image.
    func line(_ img: inout Image, _ xa: Int, _ ya: Int, _ xb: Int, _ yb: Int, _ c: (UInt8, UInt8, UInt8)) {
        var (x, y) = (xa, ya)
        let dx = abs(xb - xa), dy = -abs(yb - ya), sx = xa < xb ? 1 : -1, sy = ya < yb ? 1 : -1
        var err = dx + dy
        while true {
            if x >= 0 && x < img.width && y >= 0 && y < img.height {
                img[y, x, 0] = c.0; img[y, x, 1] = c.1; img[y, x, 2] = c.2
            }
            if x == xb && y == yb { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }
}
