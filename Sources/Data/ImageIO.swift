import CImageCodecs
import Engine
import Foundation

/// Image read/write failures, each naming the file.
extension KitError {
    public static func cannotRead(path: String, reason: String) -> KitError { .io("\(path): cannot read file: \(reason)") }
    public static func cannotDecode(path: String, reason: String) -> KitError { .format("\(path): \(reason)") }
    public static func unsupported(path: String, reason: String) -> KitError { .format("\(path): unsupported image: \(reason)") }
    public static func cannotEncode(path: String, reason: String) -> KitError { .format("\(path): cannot encode: \(reason)") }
    public static func cannotWrite(path: String, reason: String) -> KitError { .io("\(path): cannot write file: \(reason)") }
}

/// The container a byte buffer holds, judged by its signature (not the file extension).
public enum ImageFormat: Sendable {
    case png, jpeg

    public init?(signatureOf bytes: [UInt8]) {
        if bytes.count >= 8 && bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            self = .png
        } else if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF {
            self = .jpeg
        } else {
            return nil
        }
    }
}

// MARK: - Files

/// Reads a PNG or JPEG file as 8-bit RGB (the format is taken from the file's signature).
public func readImage(_ path: String) throws -> Image {
    try decodeImage(readBytes(path), name: path)
}

/// Reads a single-channel PNG label map: grey levels, or palette INDICES for palette PNGs (as Pillow gives them).
public func readLabelMap(_ path: String) throws -> LabelMap {
    try decodeLabelMap(readBytes(path), name: path)
}

/// Writes an RGB PNG. `compressionLevel` is zlib's 0...9.
public func writePNG(_ image: Image, to path: String, compressionLevel: Int = 6) throws {
    try writeBytes(encodePNG(image, compressionLevel: compressionLevel, name: path), to: path)
}

/// Writes an 8-bit label map as a grey PNG, or as a palette PNG when `palette` (RGB triples, ≤ 256) is given.
public func writePNG(_ labels: LabelMap, to path: String, palette: [(UInt8, UInt8, UInt8)]? = nil,
                     compressionLevel: Int = 6) throws {
    try writeBytes(encodePNG(labels, palette: palette, compressionLevel: compressionLevel, name: path), to: path)
}

/// Writes a baseline JPEG (quality 1...100).
public func writeJPEG(_ image: Image, to path: String, quality: Int = 95) throws {
    try writeBytes(encodeJPEG(image, quality: quality, name: path), to: path)
}

// MARK: - Memory

/// Decodes PNG or JPEG bytes to RGB; `name` is used in error messages.
public func decodeImage(_ bytes: [UInt8], name: String) throws -> Image {
    switch ImageFormat(signatureOf: bytes) {
    case .png:
        let raw = try decodeRaw(name) { b, n, out, err, len in cic_png_decode(b, n, CIC_PNG_RGB, out, err, len) }(bytes)
        return Image(width: raw.width, height: raw.height, pixels: raw.pixels)
    case .jpeg:
        let raw = try decodeRaw(name) { b, n, out, err, len in cic_jpeg_decode(b, n, out, err, len) }(bytes)
        // Upright as OpenCV's imread/imdecode with IMREAD_COLOR (what mmdet/mmseg load with) shows it.
        return Image(width: raw.width, height: raw.height, pixels: raw.pixels).oriented(exifOrientation(ofJPEG: bytes))
    case nil:
        throw KitError.cannotDecode(path: name, reason: bytes.isEmpty ? "empty file" : "not a PNG or JPEG file")
    }
}

/// Decodes a single-channel PNG label map; `name` is used in error messages.
public func decodeLabelMap(_ bytes: [UInt8], name: String) throws -> LabelMap {
    guard ImageFormat(signatureOf: bytes) == .png else {
        throw KitError.cannotDecode(path: name, reason: bytes.isEmpty ? "empty file" : "label maps must be PNG")
    }
    let raw = try decodeRaw(name) { b, n, out, err, len in cic_png_decode(b, n, CIC_PNG_LABEL, out, err, len) }(bytes)
    return LabelMap(width: raw.width, height: raw.height, labels: raw.pixels)
}

public func encodePNG(_ image: Image, compressionLevel: Int = 6, name: String = "<memory>") throws -> [UInt8] {
    try encode(name) { out, length, err, errLength in
        image.pixels.withUnsafeBufferPointer { p in
            cic_png_encode(p.baseAddress, Int32(image.width), Int32(image.height), Int32(CIC_PNG_TRUECOLOR), nil, 0,
                           Int32(compressionLevel), out, length, err, errLength)
        }
    }
}

public func encodePNG(_ labels: LabelMap, palette: [(UInt8, UInt8, UInt8)]? = nil, compressionLevel: Int = 6,
                      name: String = "<memory>") throws -> [UInt8] {
    let flat = palette.map { $0.flatMap { [$0.0, $0.1, $0.2] } } ?? []
    let colorType = palette == nil ? CIC_PNG_GRAY : CIC_PNG_PALETTE
    return try encode(name) { out, length, err, errLength in
        labels.labels.withUnsafeBufferPointer { p in
            flat.withUnsafeBufferPointer { pal in
                cic_png_encode(p.baseAddress, Int32(labels.width), Int32(labels.height), Int32(colorType),
                               pal.baseAddress, Int32(palette?.count ?? 0), Int32(compressionLevel), out, length, err,
                               errLength)
            }
        }
    }
}

public func encodeJPEG(_ image: Image, quality: Int = 95, name: String = "<memory>") throws -> [UInt8] {
    try encode(name) { out, length, err, errLength in
        image.pixels.withUnsafeBufferPointer { p in
            cic_jpeg_encode(p.baseAddress, Int32(image.width), Int32(image.height), Int32(quality), out, length, err,
                            errLength)
        }
    }
}

// MARK: - Plumbing

private typealias RawDecoder = (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<cic_image>,
                                UnsafeMutablePointer<CChar>, Int) -> Int32

/// Runs a C decoder, copies its malloc'd pixels into a Swift array and frees them.
private func decodeRaw(_ name: String, _ decoder: @escaping RawDecoder)
    -> ([UInt8]) throws -> (width: Int, height: Int, pixels: [UInt8]) {
    return { bytes in
        var image = cic_image()
        var message = [CChar](repeating: 0, count: 512)
        let status = bytes.withUnsafeBufferPointer { b in
            message.withUnsafeMutableBufferPointer { m in decoder(b.baseAddress, b.count, &image, m.baseAddress!, m.count) }
        }
        guard status == CIC_OK, let pixels = image.pixels else {
            let reason = String(cString: message)
            if status == CIC_ERR_UNSUPPORTED { throw KitError.unsupported(path: name, reason: reason) }
            throw KitError.cannotDecode(path: name, reason: reason.isEmpty ? "decode failed (\(status))" : reason)
        }
        defer { cic_free(pixels) }
        // The shim checked the size before decoding; checked again here before the copy.
        let w = Int(image.width), h = Int(image.height), c = Int(image.channels)
        let (wh, o1) = w.multipliedReportingOverflow(by: h), (count, o2) = wh.multipliedReportingOverflow(by: c)
        guard w > 0, h > 0, c == 1 || c == 3, !o1, !o2, count <= Int(CIC_MAX_DECODED_BYTES) else {
            throw KitError.unsupported(path: name, reason: "decoder returned a \(w) x \(h) x \(c) image, beyond the \(CIC_MAX_DECODED_BYTES)-byte limit")
        }
        return (w, h, Array(UnsafeBufferPointer(start: pixels, count: count)))
    }
}

/// Runs a C encoder and takes ownership of its malloc'd output.
private func encode(_ name: String,
                    _ encoder: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, UnsafeMutablePointer<Int>,
                                UnsafeMutablePointer<CChar>, Int) -> Int32) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>? = nil
    var length = 0
    var message = [CChar](repeating: 0, count: 512)
    let status = message.withUnsafeMutableBufferPointer { m in encoder(&out, &length, m.baseAddress!, m.count) }
    guard status == CIC_OK, let bytes = out else {
        throw KitError.cannotEncode(path: name, reason: String(cString: message))
    }
    defer { cic_free(bytes) }
    return Array(UnsafeBufferPointer(start: bytes, count: length))
}

/// The largest image file read (compressed; what it decodes to is limited separately, by CIC_MAX_DECODED_BYTES).
let maxImageFileBytes = 1 << 31

/// A regular file's bytes: a FIFO or a device such as /dev/zero is refused instead of read forever.
func readBytes(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_NONBLOCK)
    guard fd >= 0 else {
        throw KitError.cannotRead(path: path, reason: errno == ENOENT ? "no such file" : String(cString: strerror(errno)))
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw KitError.cannotRead(path: path, reason: String(cString: strerror(errno))) }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw KitError.cannotRead(path: path, reason: "not a regular file") }
    guard let size = Int(exactly: st.st_size), size <= maxImageFileBytes else {
        throw KitError.cannotRead(path: path, reason: "\(st.st_size) bytes, more than the \(maxImageFileBytes)-byte limit for an image file")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    while done < size {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw KitError.cannotRead(path: path, reason: n < 0 ? String(cString: strerror(errno)) : "the file shrank while read") }
        done += n
    }
    return bytes
}

func writeBytes(_ bytes: [UInt8], to path: String) throws { try writeAtomically(bytes, to: path) }

// MARK: - EXIF orientation

/// The EXIF orientation (1...8) a JPEG's APP1 segment records, 1 when it has none or it cannot be read. Every
/// offset is checked against the buffer: a malformed segment means "no orientation", never a crash.
public func exifOrientation(ofJPEG bytes: [UInt8]) -> Int {
    func u16(_ i: Int, _ little: Bool) -> Int? {
        guard i >= 0, i + 1 < bytes.count else { return nil }
        return little ? Int(bytes[i]) | Int(bytes[i + 1]) << 8 : Int(bytes[i]) << 8 | Int(bytes[i + 1])
    }
    func u32(_ i: Int, _ little: Bool) -> Int? {
        guard let a = u16(i, little), let b = u16(i + 2, little) else { return nil }
        return little ? a | b << 16 : a << 16 | b
    }
    var i = 2
    while i + 4 <= bytes.count, bytes[i] == 0xFF {
        let marker = bytes[i + 1]
        if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { i += 2; continue }
        if marker == 0xDA || marker == 0xD9 { break }   // image data: no metadata after this
        guard let length = u16(i + 2, false), length >= 2 else { break }
        let start = i + 4, end = i + 2 + length
        if marker == 0xE1, end <= bytes.count, end - start >= 14, bytes[start..<(start + 6)].elementsEqual([0x45, 0x78, 0x69, 0x66, 0, 0]) {
            let tiff = start + 6
            let little: Bool
            switch (bytes[tiff], bytes[tiff + 1]) {
            case (0x49, 0x49): little = true
            case (0x4D, 0x4D): little = false
            default: return 1
            }
            guard u16(tiff + 2, little) == 42, let ifd = u32(tiff + 4, little), let count = u16(tiff + ifd, little) else { return 1 }
            for e in 0..<count {
                let entry = tiff + ifd + 2 + 12 * e
                guard entry + 12 <= end, let tag = u16(entry, little) else { return 1 }
                if tag == 0x0112 {
                    guard u16(entry + 2, little) == 3, let value = u16(entry + 8, little), (1...8).contains(value) else { return 1 }
                    return value
                }
            }
            return 1
        }
        i = end
    }
    return 1
}

extension Image {
    /// This image turned upright for EXIF orientation `o` (1...8), as OpenCV's `ApplyExifOrientation` does: 2 mirror,
    /// 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise.
    public func oriented(_ o: Int) -> Image {
        guard (2...8).contains(o) else { return self }
        let w = width, h = height, swaps = o >= 5
        let ow = swaps ? h : w, oh = swaps ? w : h
        var out = [UInt8](repeating: 0, count: pixels.count)
        for y in 0..<oh {
            for x in 0..<ow {
                let (sx, sy): (Int, Int)
                switch o {
                case 2: (sx, sy) = (w - 1 - x, y)
                case 3: (sx, sy) = (w - 1 - x, h - 1 - y)
                case 4: (sx, sy) = (x, h - 1 - y)
                case 5: (sx, sy) = (y, x)
                case 6: (sx, sy) = (y, h - 1 - x)
                case 7: (sx, sy) = (w - 1 - y, h - 1 - x)
                default: (sx, sy) = (w - 1 - y, x)
                }
                let d = (y * ow + x) * 3, src = (sy * w + sx) * 3
                out[d] = pixels[src]; out[d + 1] = pixels[src + 1]; out[d + 2] = pixels[src + 2]
            }
        }
        return Image(width: ow, height: oh, pixels: out)
    }
}
