import Foundation

/// Every file the toolkit writes goes through here: a temporary sibling file (`NAME.tmp-PID`), fsync, then rename
/// over the final name, so a crash, a kill or a full disk never leaves a half-written file under that name. Errors
/// name the path and the reason in one line.
public func atomicWrite(path: String, _ body: (Int32) throws -> Void) throws {
    try ProtectedInputs.check(path)
    removeStaleTemporaries(of: path)
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

/// The files and folders a tool reads (its inputs, registered at start): no file the toolkit writes may be one of them
/// or lie inside one of the folders, whatever the spelling (relative, `..`, symbolic links, hard links). Every write
/// goes through `atomicWrite`, which checks here first, so no output can replace an input; tools also check their
/// planned outputs up front, before any work.
public enum ProtectedInputs {
    struct Entry { let option: String, path: String, resolved: String, isFolder: Bool, device: UInt64, inode: UInt64 }
    private static let lock = NSLock()
    nonisolated(unsafe) private static var entries: [Entry] = []

    /// Registers an input (a file or folder that exists; others are skipped: reading them fails on its own).
    /// `option` names it in messages ("--checkpoint", "image folder").
    public static func add(_ path: String, option: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        let entry = Entry(option: option, path: path, resolved: resolve(path), isFolder: (st.st_mode & S_IFMT) == S_IFDIR,
                          device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        lock.lock(); entries.append(entry); lock.unlock()
    }

    /// Forgets every input (tests run several tools in one process).
    public static func removeAll() { lock.lock(); entries.removeAll(); lock.unlock() }

    /// Throws a usage error when writing `output` would replace an input or land inside an input folder.
    /// `option` names the output in the message ("--output"), when it is one the user gave.
    public static func check(_ output: String, option: String? = nil) throws {
        lock.lock(); let all = entries; lock.unlock()
        guard !all.isEmpty else { return }
        let resolved = resolve(output), named = option.map { $0 + " " } ?? ""
        var st = stat()
        let exists = stat(output, &st) == 0
        for e in all {
            let same = resolved == e.resolved || (exists && UInt64(st.st_dev) == e.device && UInt64(st.st_ino) == e.inode)
            if same && !e.isFolder {
                throw KitError.usage("\(named)\(output) is the \(e.option) file\(e.path == output ? "" : " " + e.path); an output must not replace an input (choose another output path)")
            }
            if e.isFolder && (same || resolved.hasPrefix(e.resolved == "/" ? "/" : e.resolved + "/")) {
                throw KitError.usage("\(named)\(output) lies inside the \(e.option) folder \(e.path); outputs must not be written into an input folder (choose another output path)")
            }
        }
    }

    /// `path` absolute, with `.`/`..` and every symbolic link of its existing part resolved (the rest need not exist).
    public static func resolve(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts = absolute.split(separator: "/").map(String.init)
        var tail: [String] = []
        while true {
            let prefix = "/" + parts.joined(separator: "/")
            if let r = realpath(prefix, nil) {
                let head = String(cString: r)
                free(r)
                var out = head.split(separator: "/").map(String.init)
                for t in tail {
                    if t == "." || t.isEmpty { continue }
                    if t == ".." { _ = out.popLast() } else { out.append(t) }
                }
                return "/" + out.joined(separator: "/")
            }
            guard let last = parts.popLast() else { return absolute }
            tail.insert(last, at: 0)
        }
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

/// Removes `NAME.tmp-PID` files left in `folder` by killed runs: those of processes that no longer exist (a live
/// one, another rank or a second run writing the same folder, keeps its own). The training tools clear their work
/// dir this way at start.
public func removeStaleTemporaries(in folder: String) {
    for (_, names) in staleTemporaries(in: folder) { for n in names { unlink("\(folder)/\(n)") } }
}

/// Removes the stale temporaries of `path` itself (`path.tmp-PID` of processes that no longer exist), before it is
/// written: a run killed while writing any file leaves nothing behind once that file is written again. Each folder
/// is listed once per process; files of other names are never touched.
func removeStaleTemporaries(of path: String) {
    let ns = path as NSString
    let folder = ns.deletingLastPathComponent.isEmpty ? "." : ns.deletingLastPathComponent, name = ns.lastPathComponent
    staleLock.lock()
    if staleByFolder[folder] == nil { staleByFolder[folder] = staleTemporaries(in: folder) }
    let stale = staleByFolder[folder]?.removeValue(forKey: name) ?? []
    staleLock.unlock()
    for n in stale { unlink("\(folder)/\(n)") }
}

/// `NAME.tmp-PID` entries of `folder` whose process no longer exists, by NAME.
private func staleTemporaries(in folder: String) -> [String: [String]] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [:] }
    var out: [String: [String]] = [:]
    for n in names {
        guard let r = n.range(of: ".tmp-", options: .backwards) else { continue }
        let suffix = n[r.upperBound...]
        guard !suffix.isEmpty, suffix.allSatisfy(\.isNumber), let pid = Int32(suffix), pid != getpid() else { continue }
        if kill(pid, 0) == 0 || errno == EPERM { continue }   // still running
        out[String(n[..<r.lowerBound]), default: []].append(n)
    }
    return out
}
private let staleLock = NSLock()
nonisolated(unsafe) private var staleByFolder: [String: [String: [String]]] = [:]

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
