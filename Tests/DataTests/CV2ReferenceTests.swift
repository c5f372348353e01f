import Data
import XCTest

/// Our resize and HSV conversions against outputs recorded from OpenCV (CV2Reference.swift).
final class CV2ReferenceTests: XCTestCase {
    /// The recorded inputs: HWC uint8 given by a formula, so no image has to be stored.
    static func source(width: Int, height: Int, channels: Int = 3) -> [UInt8] {
        var out: [UInt8] = []
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<channels { out.append(UInt8((x * 37 + y * 91 + c * 53 + (x * y) % 13 * 11) % 256)) }
            }
        }
        return out
    }

    func testBilinearMatchesCV2() {
        for k in cv2ResizeCases {
            let got = resizeBilinear(Self.source(width: k.src.0, height: k.src.1), width: k.src.0, height: k.src.1,
                                     channels: 3, toWidth: k.dst.0, toHeight: k.dst.1)
            let diffs = zip(got, k.linear).filter { $0 != $1 }.count
            XCTAssertEqual(diffs, 0, "\(k.src) → \(k.dst): \(diffs) of \(got.count) values differ")
        }
    }

    func testLargeBilinearResizesMatchCV2Hashes() {
        for k in cv2ResizeHashes {
            let got = resizeBilinear(Self.source(width: k.src.0, height: k.src.1), width: k.src.0, height: k.src.1,
                                     channels: 3, toWidth: k.dst.0, toHeight: k.dst.1)
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in got { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            XCTAssertEqual(h, k.fnv1a, "\(k.src) → \(k.dst)")
        }
    }

    func testNearestMatchesCV2() {
        for k in cv2ResizeCases {
            let got = resizeNearest(Self.source(width: k.src.0, height: k.src.1, channels: 3).enumerated()
                .filter { $0.offset % 3 == 0 }.map(\.element), width: k.src.0, height: k.src.1,
                toWidth: k.dst.0, toHeight: k.dst.1)
            XCTAssertEqual(got, k.nearest, "\(k.src) → \(k.dst)")
        }
    }

    func testHSVMatchesCV2() {
        let src = Self.source(width: 23, height: 17)
        let hsv = rgbToHSV(src)
        XCTAssertEqual(zip(hsv, cv2RGB2HSV).filter { $0 != $1 }.count, 0)
        let back = hsvToRGB(cv2RGB2HSV)
        XCTAssertEqual(zip(back, cv2HSV2RGB).filter { $0 != $1 }.count, 0)
    }
}
