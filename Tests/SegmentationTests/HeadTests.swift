import Backbones
import Engine
import Heads
import NN
import XCTest

final class HeadTests: XCTestCase {
    override func setUp() { EngineRandom.seed(7) }

    func testPPMOutputsOneUpsampledMapPerScale() {
        let ppm = PPM(poolScales: [1, 2, 3, 6], inChannels: 16, channels: 4).eval()
        let x = randomTensor([2, 16, 7, 9], seed: 1)
        let outs = ppm(x)
        XCTAssertEqual(outs.map(\.shape), Array(repeating: [2, 4, 7, 9], count: 4))
        // The scale-1 branch pools to one cell: its upsampled map is constant over each channel.
        let o = outs[0]
        for p in 0..<8 {
            let first = o.data[p * 63]
            for i in 0..<63 { XCTAssertEqual(o.data[p * 63 + i], first, accuracy: 1e-6) }
        }
    }

    func testUPerHeadOutputIsAtTheFinestLevel() {
        let head = UPerHead(inChannels: [8, 16, 32, 64], channels: 16, numClasses: 5).eval()
        let levels = [[2, 8, 16, 16], [2, 16, 8, 8], [2, 32, 4, 4], [2, 64, 2, 2]].enumerated().map { randomTensor($1, seed: UInt64($0)) }
        XCTAssertEqual(head(levels).shape, [2, 5, 16, 16])
        // Odd level sizes, as odd inputs give: the output still has the finest level's size.
        let odd = [[1, 8, 15, 13], [1, 16, 8, 7], [1, 32, 4, 4], [1, 64, 2, 2]].enumerated().map { randomTensor($1, seed: UInt64($0)) }
        XCTAssertEqual(head(odd).shape, [1, 5, 15, 13])
        XCTAssertEqual(head.fused(levels).shape, [2, 16, 16, 16])
    }

    func testFCNHeadUsesItsInIndex() {
        let head = FCNHead(inChannels: 32, channels: 8, numClasses: 3, inIndex: 2).eval()
        let levels = [[1, 8, 16, 16], [1, 16, 8, 8], [1, 32, 4, 4], [1, 64, 2, 2]].enumerated().map { randomTensor($1, seed: UInt64($0)) }
        XCTAssertEqual(head(levels).shape, [1, 3, 4, 4])
        let withCat = FCNHead(inChannels: 32, channels: 8, numClasses: 3, inIndex: 2, numConvs: 2, concatInput: true).eval()
        XCTAssertEqual(withCat(levels).shape, [1, 3, 4, 4])
    }

    func testSemanticFPNHeadSumsLevelsAtQuarterScale() {
        for norm in [ConvNorm.bn, .groupNorm(groups: 4)] {
            let head = SemanticFPNHead(inChannels: [8, 8, 8, 8], channels: 8, numClasses: 4, norm: norm).eval()
            let levels = [16, 8, 4, 2].enumerated().map { randomTensor([2, 8, $1, $1], seed: UInt64($0)) }
            XCTAssertEqual(head(levels).shape, [2, 4, 16, 16])
            // A 5-level neck (with P6) works too: FPNHead's in_index is [0, 1, 2, 3].
            XCTAssertEqual(head(levels + [randomTensor([2, 8, 1, 1], seed: 9)]).shape, [2, 4, 16, 16])
        }
    }

    func testHeadsBackpropagateIntoEveryParameter() {
        let head = UPerHead(inChannels: [8, 16, 32, 64], channels: 16, numClasses: 5, dropoutRatio: 0).train()
        let levels = [[2, 8, 16, 16], [2, 16, 8, 8], [2, 32, 4, 4], [2, 64, 2, 2]].enumerated().map { randomTensor($1, seed: UInt64($0)) }
        (head(levels) * randomTensor([2, 5, 16, 16], seed: 11)).sum().backward()
        for (key, p) in head.trainableParameters() { XCTAssertNotNil(p.grad, "no gradient for \(key)") }
    }

    func testDropout2dDropsWholeChannels() {
        EngineRandom.seed(3)
        let x = Tensor(zeros: [4, 32, 3, 3], value: 1)
        let y = x.dropout2d(0.5, training: true)
        var dropped = 0
        for p in 0..<128 {
            let v = y.data[p * 9]
            XCTAssertTrue(v == 0 || v == 2)
            for i in 0..<9 { XCTAssertEqual(y.data[p * 9 + i], v) }
            if v == 0 { dropped += 1 }
        }
        XCTAssertTrue(dropped > 32 && dropped < 96, "dropped \(dropped) of 128 channels at p = 0.5")
        XCTAssertTrue(x.dropout2d(0.5, training: false) === x)
    }
}
