import Data
import Training
import XCTest

final class PlotTests: XCTestCase {
    func testPanelsHaveTickValuesTitlesAndLegends() {
        let loss = LinePlot.Series(name: "loss", points: (1...50).map { (Double($0 * 10), 2.0 / Double($0)) }, colour: (200, 30, 30))
        let map = LinePlot.Series(name: "mIoU", points: [(250, 0.3), (500, 0.6)], colour: (30, 90, 200))
        let plot = LinePlot()
        let img = plot.render([.init(title: "loss", series: [loss]), .init(title: "metric", series: [map])])
        XCTAssertEqual(img.height, 2 * plot.panelHeight)
        func dark(_ x0: Int, _ x1: Int, _ y0: Int, _ y1: Int) -> Int {
            var n = 0
            for y in y0..<y1 { for x in x0..<x1 where img[y, x, 0] < 100 && img[y, x, 1] < 100 && img[y, x, 2] < 100 { n += 1 } }
            return n
        }
        // Y titles (x < 12) and tick values (12 ..< 60) in both panels; x tick values and the x title under each axis.
        for p in 0..<2 {
            let top = p * plot.panelHeight
            XCTAssertGreaterThan(dark(0, 12, top, top + plot.panelHeight), 20, "y title of panel \(p)")
            XCTAssertGreaterThan(dark(12, 60, top, top + plot.panelHeight), 40, "y tick values of panel \(p)")
            XCTAssertGreaterThan(dark(64, plot.width, top + plot.panelHeight - 30, top + plot.panelHeight), 60, "x ticks and title of panel \(p)")
        }
        XCTAssertEqual(LinePlot.tick(0.25), "0.25")
        XCTAssertEqual(LinePlot.tick(500), "500")
        XCTAssertEqual(LinePlot.tick(40_000), "40k")
    }
}
