// PNG and JPEG bytes: decodeImage (RGB) and decodeLabelMap (single channel) through the libpng/libjpeg shims.
import Data
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImageDecode(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        let image = try decodeImage(bytes, name: "fuzz.img")
        check(image.width > 0 && image.height > 0 && image.pixels.count == image.width * image.height * 3,
              "image \(image.width) x \(image.height) with \(image.pixels.count) bytes")
    } catch {
        expectKitError(error, source: "fuzz.img")
    }
    do {
        let labels = try decodeLabelMap(bytes, name: "fuzz.png")
        check(labels.width > 0 && labels.height > 0 && labels.labels.count == labels.width * labels.height,
              "label map \(labels.width) x \(labels.height) with \(labels.labels.count) bytes")
    } catch {
        expectKitError(error, source: "fuzz.png")
    }
    return 0
}
