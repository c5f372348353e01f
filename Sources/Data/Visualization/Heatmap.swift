/// A labelled square matrix as coloured cells with their values written in (confusion matrices): row labels left,
/// column labels above (read downwards), a colour bar on the right, titles for the plot and both axes.
public struct HeatmapPlot {
    public var title: String
    public var rowTitle: String
    public var columnTitle: String
    public var labels: [String]
    public var cell = 40

    public init(title: String, rowTitle: String, columnTitle: String, labels: [String]) {
        self.title = title; self.rowTitle = rowTitle; self.columnTitle = columnTitle; self.labels = labels
    }

    /// `values` [row][column] (NaN: no value, drawn grey) coloured over `range` by matplotlib's "plasma", each cell
    /// captioned by `text`.
    public func render(_ values: [[Double]], range: ClosedRange<Double>, text: (Double) -> String) -> Image {
        let n = labels.count
        precondition(values.count == n && values.allSatisfy { $0.count == n }, "heatmap: \(n) labels for a \(values.count)-row matrix")
        let labelWidth = (labels.map { BitmapFont.width(of: $0) }.max() ?? 0), longest = labels.map(\.count).max() ?? 0
        let left = 24 + labelWidth + 8, top = 28 + longest * 9 + 6, grid = n * cell
        let width = left + grid + 24 + 16 + 40, height = top + grid + 30
        var img = Image(width: width, height: height, fill: (255, 255, 255))
        let black: RGB = (0, 0, 0)
        img.drawText(title, x: (width - BitmapFont.width(of: title, scale: 2)) / 2, y: 4, black, scale: 2)
        for (i, label) in labels.enumerated() {
            let y = top + i * cell + (cell - BitmapFont.glyphHeight) / 2
            img.drawText(label, x: left - 6 - BitmapFont.width(of: label), y: y, black)
            let x = left + i * cell + (cell - BitmapFont.glyphWidth) / 2
            for (k, ch) in label.enumerated() { img.drawText(String(ch), x: x, y: top - 6 - (label.count - k) * 9, black) }
        }
        for r in 0..<n {
            for c in 0..<n {
                let v = values[r][c], x = left + c * cell, y = top + r * cell
                let colour = v.isNaN ? (200, 200, 200) : Self.plasma((v - range.lowerBound) / (range.upperBound - range.lowerBound))
                img.fillRect(x0: x, y0: y, x1: x + cell, y1: y + cell, colour)
                let s = text(v), light = Int(colour.0) * 3 + Int(colour.1) * 6 + Int(colour.2) > 1400
                img.drawText(s, x: x + (cell - BitmapFont.width(of: s)) / 2, y: y + (cell - BitmapFont.glyphHeight) / 2,
                             light ? black : (255, 255, 255))
            }
        }
        img.drawRect(x0: left - 1, y0: top - 1, x1: left + grid, y1: top + grid, black)
        // Axis titles: the columns' below the grid, the rows' read downwards at the far left.
        img.drawText(columnTitle, x: left + (grid - BitmapFont.width(of: columnTitle)) / 2, y: top + grid + 10, black)
        let rowTop = top + grid / 2 - rowTitle.count * 9 / 2
        for (k, ch) in rowTitle.enumerated() { img.drawText(String(ch), x: 6, y: rowTop + k * 9, black) }
        // Colour bar with its two ends' values.
        let bx = left + grid + 24
        for y in 0..<grid { img.fillRect(x0: bx, y0: top + y, x1: bx + 16, y1: top + y + 1, Self.plasma(1 - Double(y) / Double(max(grid - 1, 1)))) }
        img.drawText(PlotTick.format(range.upperBound), x: bx + 20, y: top, black)
        img.drawText(PlotTick.format(range.lowerBound), x: bx + 20, y: top + grid - BitmapFont.glyphHeight, black)
        return img
    }

    /// matplotlib's "plasma" at t in 0...1 (linear between nine of its samples).
    public static func plasma(_ t: Double) -> RGB {
        let stops: [(Double, Double, Double)] = [(13, 8, 135), (75, 3, 161), (125, 3, 168), (168, 34, 150), (203, 70, 121),
                                                 (229, 107, 93), (248, 148, 65), (253, 195, 40), (240, 249, 33)]
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1), i = min(Int(x), stops.count - 2), f = x - Double(i)
        let (a, b) = (stops[i], stops[i + 1])
        return (UInt8((a.0 + (b.0 - a.0) * f).rounded()), UInt8((a.1 + (b.1 - a.1) * f).rounded()), UInt8((a.2 + (b.2 - a.2) * f).rounded()))
    }
}

/// Compact numbers for axes and colour bars (LinePlot's ticks, HeatmapPlot's colour bar).
public enum PlotTick {
    /// Large values whole (ten thousands and up in "k"), smaller ones with one or two decimals.
    public static func format(_ v: Double) -> String {
        let a = abs(v)
        if a >= 10_000 { return String(format: "%.0fk", v / 1000) }
        if a >= 100 || v == v.rounded() { return String(format: "%.0f", v) }
        return String(format: a >= 10 ? "%.1f" : "%.2f", v)
    }
}
