import Foundation

/// Every file the toolkit writes goes through here: a temporary sibling file (`NAME.tmp-PID`), fsync, then rename
/// over the final name, so a crash, a kill or a full disk never leaves a half-written file under that name. Errors
/// name the path and the reason in one line.
public func atomicWrite(path: String, _ body: (Int32) throws -> Void) throws {
    let tmp = path + ".tmp-\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw KitError.io("\(path): cannot create (\(String(cString: strerror(errno))))") }
    do {
        try body(fd)
        guard fsync(fd) == 0 else { throw KitError.io("\(path): fsync failed (\(String(cString: strerror(errno))))") }
        close(fd)
    } catch {
        close(fd); unlink(tmp); throw error
    }
    guard rename(tmp, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(tmp)
        throw KitError.io("\(path): rename failed (\(reason))")
    }
}

/// Writes `n` bytes at `p` to `fd`, retrying short writes; errors name `path`.
public func writeAll(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int, _ path: String) throws {
    var done = 0
    while done < n {
        let w = Foundation.write(fd, p + done, n - done)
        if w < 0 {
            if errno == EINTR { continue }
            throw KitError.io("\(path): write failed (\(String(cString: strerror(errno))))")
        }
        done += w
    }
}

/// `bytes` to `path`, atomically.
public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    try atomicWrite(path: path) { fd in try bytes.withUnsafeBytes { try writeAll(fd, $0.baseAddress!, $0.count, path) } }
}

/// UTF-8 `text` to `path`, atomically.
public func writeAtomically(_ text: String, to path: String) throws { try writeAtomically(Array(text.utf8), to: path) }

/// Removes `NAME.tmp-PID` files left in `folder` by killed runs (any PID that is not this process).
public func removeStaleTemporaries(in folder: String) {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
    let mine = ".tmp-\(getpid())"
    for n in names where n.range(of: ".tmp-") != nil && !n.hasSuffix(mine) {
        let suffix = n[n.range(of: ".tmp-", options: .backwards)!.upperBound...]
        if !suffix.isEmpty && suffix.allSatisfy(\.isNumber) { unlink("\(folder)/\(n)") }
    }
}

/// Writes `text` to stderr. A full or closed stderr is ignored (FileHandle's write traps on such errors; a
/// message that cannot be shown must not crash the run).
public func writeStderr(_ text: String) {
    var bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let w = bytes.withUnsafeMutableBytes { Foundation.write(2, $0.baseAddress! + done, $0.count - done) }
        if w < 0 && errno == EINTR { continue }
        if w <= 0 { return }
        done += w
    }
}

/// Creates a folder and its parents (mkdir -p), failing with one line naming the folder and the reason.
public func createDirectory(_ path: String) throws {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") where !part.isEmpty {
        prefix += part
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
            throw KitError.io("\(path): cannot create the folder (\(prefix): \(String(cString: strerror(errno))))")
        }
        var st = stat()
        guard stat(prefix, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw KitError.io("\(path): cannot create the folder (\(prefix) is a file)")
        }
        prefix += "/"
    }
}

/// A Foundation/POSIX error as a short reason, without the NSError dump.
public func describe(_ error: Error) -> String {
    if let e = error as? KitError { return e.description }
    let ns = error as NSError
    if let underlying = ns.userInfo[NSUnderlyingErrorKey].flatMap({ $0 as? Error }).map({ $0 as NSError }),
       underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    switch CocoaError.Code(rawValue: ns.code) {
    case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or folder"
    case .fileWriteNoPermission, .fileReadNoPermission: return "permission denied"
    case .fileWriteOutOfSpace: return "no space left on device"
    case .fileWriteFileExists: return "a file is in the way"
    default: return ns.localizedDescription
    }
}
