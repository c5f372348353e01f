import Data
import Foundation

/// A small line chart drawn straight into an RGB `Image`: one panel per series group sharing the x axis, each with
/// its y-axis title, tick values, a light grid and a legend of its series.
public struct LinePlot {
    /// Series colours, in order (curves.png and analyze-logs cycle through them).
    public static let colours: [RGB] = [(200, 30, 30), (30, 90, 200), (30, 160, 60), (220, 140, 0), (140, 40, 170), (0, 150, 160)]

    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var colour: RGB
        public init(name: String, points: [(x: Double, y: Double)], colour: RGB) {
            self.name = name; self.points = points; self.colour = colour
        }
    }

    /// One stacked chart: its series and the y-axis title.
    public struct Panel {
        public var title: String
        public var series: [Series]
        public init(title: String, series: [Series]) { self.title = title; self.series = series }
    }

    public var width = 800, panelHeight = 260
    public var xTitle = "iteration"
    /// Room for the y title and tick values (left), tick values and the x title (bottom).
    let left = 64, right = 16, top = 12, bottom = 34

    public init() {}

    /// Stacks the panels, each with its own y range, over the x range of all points.
    public func render(_ panels: [Panel]) -> Image {
        var img = Image(width: width, height: panelHeight * max(1, panels.count), fill: (255, 255, 255))
        let allX = panels.flatMap { $0.series.flatMap { $0.points.map(\.x) } }
        let x0 = allX.min() ?? 0, x1 = max(allX.max() ?? 1, x0 + 1e-9)
        let black: RGB = (0, 0, 0), grey: RGB = (225, 225, 225), text: RGB = (60, 60, 60)
        for (p, panel) in panels.enumerated() {
            let t = p * panelHeight + top, b = (p + 1) * panelHeight - bottom, l = left, r = width - right
            let ys = panel.series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
            var y0 = min(ys.min() ?? 0, 0), y1 = ys.max() ?? 1
            if y1 <= y0 { y1 = y0 + 1 }
            y1 += (y1 - y0) * 0.05
            if y0 < 0 { y0 -= (y1 - y0) * 0.05 }
            for k in 0...4 {   // y grid and tick values
                let y = b - (b - t) * k / 4
                if k > 0 { img.drawLine(l + 1, y, r, y, grey) }
                let label = Self.tick(y0 + (y1 - y0) * Double(k) / 4)
                img.drawText(label, x: l - 4 - BitmapFont.width(of: label), y: y - 3, text)
            }
            for k in 0...4 {   // x ticks and values
                let x = l + (r - l) * k / 4
                img.drawLine(x, b, x, b + 3, black)
                let label = Self.tick(x0 + (x1 - x0) * Double(k) / 4)
                let w = BitmapFont.width(of: label)
                img.drawText(label, x: min(max(x - w / 2, l - 8), r - w), y: b + 6, text)
            }
            img.drawLine(l, b, r, b, black)
            img.drawLine(l, t, l, b, black)
            img.drawText(xTitle, x: (l + r - BitmapFont.width(of: xTitle)) / 2, y: b + 18, black)
            // The y title reads downwards, one letter per line, left of the tick values.
            let titleTop = (t + b) / 2 - panel.title.count * 9 / 2
            for (k, ch) in panel.title.enumerated() { img.drawText(String(ch), x: 4, y: titleTop + k * 9, black) }

            func px(_ pt: (x: Double, y: Double)) -> (Int, Int) {
                (l + Int((pt.x - x0) / (x1 - x0) * Double(r - l)), b - Int((pt.y - y0) / (y1 - y0) * Double(b - t)))
            }
            for s in panel.series {
                let pts = s.points.filter { $0.y.isFinite }
                for (a, c) in zip(pts, pts.dropFirst()) {
                    let (ax, ay) = px(a), (cx, cy) = px(c)
                    img.drawLine(ax, ay, cx, cy, s.colour)
                }
                if pts.count == 1 { let (ax, ay) = px(pts[0]); img.fillRect(x0: ax - 2, y0: ay - 2, x1: ax + 3, y1: ay + 3, s.colour) }
            }
            // Legend: top right, one line per series.
            let legendWidth = (panel.series.map { BitmapFont.width(of: $0.name) }.max() ?? 0) + 20
            for (k, s) in panel.series.enumerated() {
                let lx = r - legendWidth - 4, ly = t + 4 + k * 11
                img.fillRect(x0: lx - 2, y0: ly - 2, x1: r - 2, y1: ly + 9, (255, 255, 255))
                img.fillRect(x0: lx, y0: ly + 2, x1: lx + 12, y1: ly + 5, s.colour)
                img.drawText(s.name, x: lx + 16, y: ly, black)
            }
        }
        return img
    }

    /// A compact tick value (`PlotTick.format`).
    public static func tick(_ v: Double) -> String { PlotTick.format(v) }
}
