// Shared by every fuzz target (compiled into each): a scratch file for parsers that read paths, and the check that
// every refusal is a `KitError` of one line naming its source first. Anything else is a finding: the harness stops
// with fatalError so libFuzzer saves the input.
import Engine
import Foundation

enum Scratch {
    static let dir: String = {
        let d = NSTemporaryDirectory() + "acmix-fuzz-\(getpid())"
        mkdir(d, 0o700)
        return d
    }()

    /// Writes the input to `dir/name` (replacing it) and returns the path.
    static func write(_ data: UnsafePointer<UInt8>?, _ size: Int, name: String) -> String {
        let path = dir + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        if fd < 0 { fatalError("cannot create \(path)") }
        var done = 0
        while done < size, let data {
            let n = Foundation.write(fd, data + done, size - done)
            if n <= 0 { fatalError("cannot write \(path)") }
            done += n
        }
        close(fd)
        return path
    }
}

/// A refusal must be a KitError with a non-empty message; with `oneLine`, of one line; with `source`, starting with it.
func expectKitError(_ error: Error, source: String?, oneLine: Bool = true) {
    guard let e = error as? KitError else { fatalError("not a KitError: \(type(of: error)): \(error)") }
    let m = e.description
    if m.isEmpty { fatalError("empty error message") }
    if oneLine && m.contains("\n") { fatalError("message of more than one line: \(m)") }
    if let source, !m.hasPrefix(source) { fatalError("message does not start with \(source): \(m)") }
}

func check(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition { fatalError(what()) }
}
