// Configs: the first line of the input is a `--set` override, the rest a config file. JSON.parse (json-c) with and
// without duplicate-key checks and a serialise/parse round trip; Config.load (file, `_base_`, overrides) validated
// against a small schema with defaults, ranges, enums, lists, tagged and optional sections, then read back.
import Config
import Foundation
import NN

let schema: ConfigSchema = .object([
    .init("name", .string, required: true),
    .init("size", .intRange(1...4096), default: 512),
    .init("lr", .positiveNumber, default: 0.01),
    .init("mode", .oneOf(["train", "eval"]), default: "train"),
    .init("scales", .array(.intRange(1...8192), count: 2), default: [512, 512]),
    .init("flags", .optional(.array(.bool))),
    .init("extra", .anyOf([.int, .string])),
    .init("model", .tagged("type", [
        "a": .object([.init("type", .string), .init("depth", .intRange(1...200), default: 50)]),
        "b": .object([.init("type", .string), .init("ratio", .fraction, default: 0.5),
                      .init("inner", .object([.init("k", .nonNegativeInt, default: 3)]))]),
    ])),
])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let newline = bytes.firstIndex(of: 10) ?? bytes.count
    let override = String(decoding: bytes[..<newline], as: UTF8.self)
    let body = Array(bytes[Swift.min(newline + 1, bytes.count)...])

    body.withUnsafeBytes { raw in
        do {
            let json = try JSON.parse(raw, source: "config.json")
            // Non-finite numbers serialise as null (JSON has no NaN), so only finite documents round-trip.
            func finite(_ v: JSON) -> Bool {
                switch v {
                case let .double(d): return d.isFinite
                case let .array(a): return a.allSatisfy(finite)
                case let .object(kv): return kv.allSatisfy { finite($0.1) }
                default: return true
                }
            }
            if finite(json) {
                let again = try JSON.parse(json.serialized(), source: "serialized")
                check(again == json, "serialise/parse round trip changed the value: \(json.serialized())")
            }
            _ = JSON.firstDuplicateKey(raw)
            _ = try JSON.parse(raw, source: "config.json", rejectDuplicateKeys: true)
        } catch {
            expectKitError(error, source: "config.json")
        }
    }

    let path = Scratch.write(body, body.count, name: "config.json")
    do {
        let config = try Config.load(path: path, overrides: override.isEmpty ? [] : [override])
        try config.validate(schema)
        let c = config.filled(schema)
        _ = try c.string("name")
        _ = try c.int("size")
        _ = try c.double("lr")
        _ = try c.ints("scales")
        if c.has("model") { _ = try c.string("model.type") }
        _ = c.unreadKeys()
        _ = c.serialized()
    } catch {
        // Keys from the file appear in config messages as written, so they are not required to be one line.
        expectKitError(error, source: nil, oneLine: false)
    }
    return 0
}
