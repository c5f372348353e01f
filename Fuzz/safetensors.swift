// Safetensors files: SafeTensors.read (header length, JSON header, shapes, offsets, dtype conversion).
import Engine
import Foundation
import NN

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = Scratch.write(data, size, name: "weights.safetensors")
    do {
        let f = try SafeTensors.read(path: path)
        check(f.names.count == f.tensors.count, "\(f.names.count) names for \(f.tensors.count) tensors")
        var bytes = 0
        for (name, t) in f.tensors {
            check(t.count == t.shape.reduce(1, *), "tensor \(name): \(t.count) values for shape \(t.shape)")
            bytes += t.count
        }
        check(bytes <= size, "\(bytes) values read from a \(size)-byte file")
    } catch {
        expectKitError(error, source: path)
    }
    return 0
}
