import Foundation
import XCTest
import Data

final class ImageIOTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "acmix-imageio-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func gradient(width: Int, height: Int) -> Image {
        var img = Image(width: width, height: height)
        for y in 0..<height {
            for x in 0..<width {
                img[y, x, 0] = UInt8((x * 255) / max(1, width - 1))
                img[y, x, 1] = UInt8((y * 255) / max(1, height - 1))
                img[y, x, 2] = UInt8((x * 7 + y * 13) & 255)
            }
        }
        return img
    }

    func testRGBRoundTrip() throws {
        let img = gradient(width: 37, height: 21)
        let path = dir + "/rgb.png"
        try writePNG(img, to: path)
        XCTAssertEqual(try readImage(path), img)
    }

    func testGrayLabelRoundTripAndRGBExpansion() throws {
        let labels = LabelMap(width: 5, height: 3, labels: (0..<15).map { UInt8($0 * 17) })
        let path = dir + "/gray.png"
        try writePNG(labels, to: path)
        XCTAssertEqual(try readLabelMap(path), labels)
        let rgb = try readImage(path)
        XCTAssertEqual(rgb[2, 4, 0], 14 * 17)
        XCTAssertEqual(rgb[2, 4, 1], 14 * 17)
        XCTAssertEqual(rgb[2, 4, 2], 14 * 17)
    }

    func testPaletteKeepsIndicesAsLabelsAndColoursAsRGB() throws {
        let palette: [(UInt8, UInt8, UInt8)] = (0..<256).map { i in (UInt8(255 - i), UInt8((i * 3) & 255), 7) }
        let labels = LabelMap(width: 4, height: 2, labels: [0, 1, 2, 255, 20, 20, 3, 254])
        let path = dir + "/palette.png"
        try writePNG(labels, to: path, palette: palette)
        XCTAssertEqual(try readLabelMap(path), labels)
        let rgb = try readImage(path)
        XCTAssertEqual([rgb[0, 1, 0], rgb[0, 1, 1], rgb[0, 1, 2]], [254, 3, 7])
        XCTAssertEqual([rgb[1, 3, 0], rgb[1, 3, 1], rgb[1, 3, 2]], [1, UInt8((254 * 3) & 255), 7])
    }

    func testSixteenBitAndGrayAlphaDecode() throws {
        // 16-bit gray 2x1: samples 0x1234 and 0x00FF.
        let gray16 = makePNG(width: 2, height: 1, bitDepth: 16, colorType: 0, rows: [[0, 0x12, 0x34, 0x00, 0xFF]])
        let rgb = try decodeImage(gray16, name: "g16.png")
        XCTAssertEqual(rgb.pixels, [0x12, 0x12, 0x12, 0, 0, 0])  // high byte, as OpenCV/Pillow
        // 16-bit RGBA 1x1.
        let rgba16 = makePNG(width: 1, height: 1, bitDepth: 16, colorType: 6,
                             rows: [[0, 0xAB, 0x01, 0xCD, 0x02, 0xEF, 0x03, 0x00, 0x00]])
        XCTAssertEqual(try decodeImage(rgba16, name: "rgba16.png").pixels, [0xAB, 0xCD, 0xEF])
        // 8-bit gray+alpha 2x1: (10, a=0), (200, a=255); alpha dropped, not composited.
        let ga = makePNG(width: 2, height: 1, bitDepth: 8, colorType: 4, rows: [[0, 10, 0, 200, 255]])
        XCTAssertEqual(try decodeImage(ga, name: "ga.png").pixels, [10, 10, 10, 200, 200, 200])
        XCTAssertEqual(try decodeLabelMap(ga, name: "ga.png").labels, [10, 200])
        // 16-bit gray label whose values fit in 8 bits decodes to them.
        let small16 = makePNG(width: 2, height: 1, bitDepth: 16, colorType: 0, rows: [[0, 0, 7, 0, 255]])
        XCTAssertEqual(try decodeLabelMap(small16, name: "l16.png").labels, [7, 255])
    }

    func testSubByteLabelsFollowPillow() throws {
        // 2-bit gray [1, 3] → mode "L" values [85, 255]; 4-bit gray [1, 15] → [17, 255].
        let g2 = makePNG(width: 2, height: 1, bitDepth: 2, colorType: 0, rows: [[0, 0x70]])
        XCTAssertEqual(try decodeLabelMap(g2, name: "g2.png").labels, [85, 255])
        let g4 = makePNG(width: 2, height: 1, bitDepth: 4, colorType: 0, rows: [[0, 0x1F]])
        XCTAssertEqual(try decodeLabelMap(g4, name: "g4.png").labels, [17, 255])
        // 1-bit gray [1, 0, 1] → mode "1", read as 0/1.
        let g1 = makePNG(width: 3, height: 1, bitDepth: 1, colorType: 0, rows: [[0, 0xA0]])
        XCTAssertEqual(try decodeLabelMap(g1, name: "g1.png").labels, [1, 0, 1])
        XCTAssertEqual(try decodeImage(g1, name: "g1.png").pixels, [255, 255, 255, 0, 0, 0, 255, 255, 255])
        // 4-bit palette [2, 9] keeps indices as labels; RGB gives the palette colours.
        let palette: [UInt8] = (0..<16).flatMap { i -> [UInt8] in [UInt8(i * 10), UInt8(i), 200] }
        let p4 = makePNG(width: 2, height: 1, bitDepth: 4, colorType: 3, rows: [[0, 0x29]], palette: palette)
        XCTAssertEqual(try decodeLabelMap(p4, name: "p4.png").labels, [2, 9])
        XCTAssertEqual(try decodeImage(p4, name: "p4.png").pixels, [20, 2, 200, 90, 9, 200])
    }

    func testSixteenBitLabelOutOfRangeAndColourLabelAreRejected() throws {
        let gray16 = makePNG(width: 2, height: 1, bitDepth: 16, colorType: 0, rows: [[0, 0x12, 0x34, 0x00, 0xFF]])
        XCTAssertThrowsError(try decodeLabelMap(gray16, name: "g16.png")) { error in
            XCTAssertTrue("\(error)".contains("g16.png"), "\(error)")
        }
        let rgb = try encodePNG(gradient(width: 3, height: 3))
        XCTAssertThrowsError(try decodeLabelMap(rgb, name: "colour.png")) { error in
            guard case let .format(m)? = error as? KitError, m.hasPrefix("colour.png: unsupported image") else { return XCTFail("\(error)") }
        }
    }

    func testJPEGRoundTripIsClose() throws {
        var img = gradient(width: 64, height: 48)
        for y in 0..<48 { for x in 0..<64 { img[y, x, 2] = UInt8(x + y) } }  // smooth: chroma subsampling is lossy
        let path = dir + "/img.jpg"
        try writeJPEG(img, to: path, quality: 98)
        let back = try readImage(path)
        XCTAssertEqual(back.width, 64)
        XCTAssertEqual(back.height, 48)
        let diffs = zip(img.pixels, back.pixels).map { abs(Int($0) - Int($1)) }
        XCTAssertLessThan(diffs.max()!, 16)
        XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 2)
    }

    func testCorruptAndTruncatedFilesErrorWithTheirName() throws {
        let png = try encodePNG(gradient(width: 40, height: 40))
        let jpg = try encodeJPEG(gradient(width: 40, height: 40))
        var flipped = png
        flipped[png.count / 2] ^= 0xFF
        let cases: [(String, [UInt8])] = [
            ("truncated.png", Array(png.prefix(png.count / 2))),
            ("header-only.png", Array(png.prefix(20))),
            ("flipped.png", flipped),
            ("truncated.jpg", Array(jpg.prefix(jpg.count / 2))),
            ("header-only.jpg", Array(jpg.prefix(4))),
            ("empty.png", []),
            ("text.png", Array("hello world, not an image".utf8)),
        ]
        for (name, bytes) in cases {
            let path = dir + "/" + name
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try readImage(path), name) { error in
                XCTAssertTrue("\(error)".contains(path), "\(name): \(error)")
            }
            if name.hasSuffix(".png") {
                XCTAssertThrowsError(try readLabelMap(path), name)
            }
        }
        XCTAssertThrowsError(try readImage(dir + "/missing.png")) { error in
            XCTAssertEqual(error as? KitError, .cannotRead(path: dir + "/missing.png", reason: "no such file"))
        }
    }
}

extension ImageIOTests {
    func assertRefusedForSize(_ body: @autoclosure () throws -> Any, _ name: String, _ size: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard case let .format(m)? = error as? KitError else { return XCTFail("\(error)", line: line) }
            XCTAssertTrue(m.hasPrefix(name + ": "), "names the file: \(m)", line: line)
            XCTAssertTrue(m.contains(size) && m.contains("limit"), "\(m)", line: line)
            XCTAssertFalse(m.contains("\n"), "one line: \(m)", line: line)
        }
    }

    /// A valid IHDR (correct CRC) claiming 100000 x 100000 pixels is refused from the header, before any pixel buffer
    /// is allocated, with one line naming the file. The limit covers what the decoder returns too: an 8-bit gray
    /// 20000 x 20000 file has 400 MB of rows but 1.2 GB as RGB (that was allocated, then the data ran out).
    func testHugeDimensionsAreRefusedBeforeAllocating() throws {
        let rgb = makePNG(width: 100_000, height: 100_000, bitDepth: 8, colorType: 2, rows: [[0]])
        let gray = makePNG(width: 100_000, height: 100_000, bitDepth: 8, colorType: 0, rows: [[0]])
        XCTAssertEqual(Array(rgb[12..<33]), [0x49, 0x48, 0x44, 0x52, 0x00, 0x01, 0x86, 0xA0, 0x00, 0x01, 0x86, 0xA0, 8, 2, 0, 0, 0,
                                             0x27, 0x30, 0x9C, 0x9F])  // IHDR, 100000 x 100000, 8-bit RGB, its CRC
        let path = dir + "/huge.png"
        try Data(rgb).write(to: URL(fileURLWithPath: path))
        assertRefusedForSize(try readImage(path), path, "100000 x 100000")
        assertRefusedForSize(try decodeLabelMap(gray, name: "huge-gray.png"), "huge-gray.png", "100000 x 100000")
        assertRefusedForSize(try decodeImage(gray, name: "huge-gray.png"), "huge-gray.png", "100000 x 100000")
        let wideGray = makePNG(width: 20_000, height: 20_000, bitDepth: 8, colorType: 0, rows: [[0]])
        assertRefusedForSize(try decodeImage(wideGray, name: "gray.png"), "gray.png", "20000 x 20000")
        // 16-bit RGBA: 4 bytes a pixel of rows (after narrowing to 8 bits) pass the limit though the RGB result does not.
        let deep = makePNG(width: 17_000, height: 17_000, bitDepth: 16, colorType: 6, rows: [[0]])
        assertRefusedForSize(try decodeImage(deep, name: "deep.png"), "deep.png", "17000 x 17000")
    }

    /// A JPEG whose frame header claims 60000 x 60000 is refused before decompression starts (a progressive file
    /// would allocate its whole coefficient buffer there).
    func testHugeJPEGDimensionsAreRefused() throws {
        var jpg = try encodeJPEG(gradient(width: 8, height: 8))
        let sof = try XCTUnwrap((0..<(jpg.count - 9)).first { jpg[$0] == 0xFF && jpg[$0 + 1] == 0xC0 })
        // SOF0: FF C0, length (2), precision (1), height (2), width (2).
        jpg[sof + 5] = 0xEA; jpg[sof + 6] = 0x60; jpg[sof + 7] = 0xEA; jpg[sof + 8] = 0x60
        assertRefusedForSize(try decodeImage(jpg, name: "huge.jpg"), "huge.jpg", "60000 x 60000")
    }
}

/// Builds a PNG by hand (signature, IHDR, one stored-deflate IDAT, IEND) so tests can cover bit depths and colour
/// types our encoder does not write. Each row starts with its filter byte (0 = none).
func makePNG(width: Int, height: Int, bitDepth: UInt8, colorType: UInt8, rows: [[UInt8]], palette: [UInt8] = [])
    -> [UInt8] {
    func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)] }
    func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(UInt32(data.count)) + body + be32(crc32(body))
    }
    let raw = rows.flatMap { $0 }
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in raw { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
    let len = UInt16(raw.count)
    let zlib: [UInt8] = [0x78, 0x01, 0x01, UInt8(len & 255), UInt8(len >> 8), UInt8(~len & 255), UInt8(~len >> 8)]
        + raw + be32((b << 16) | a)
    let ihdr = be32(UInt32(width)) + be32(UInt32(height)) + [bitDepth, colorType, 0, 0, 0]
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr)
        + (palette.isEmpty ? [] : chunk("PLTE", palette)) + chunk("IDAT", zlib) + chunk("IEND", [])
}
