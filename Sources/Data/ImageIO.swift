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
        return Image(width: raw.width, height: raw.height, pixels: raw.pixels)
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
