import Foundation

/// Runs the package's command-line tools from the release build (`swift build -c release` first), for the tests
/// that check a tool's whole contract: arguments, files written, stdout, one-line errors and exit codes.
public enum ToolRunner {
    /// The checkout holding Package.swift, found upwards from this file.
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url
    }()

    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public struct MissingTool: Error, CustomStringConvertible {
        public var description: String
    }

    /// `.build/release/<tool>`.
    public static func path(of tool: String) -> String { packageRoot.appendingPathComponent(".build/release/\(tool)").path }

    /// Runs `tool` with `args` (in `cwd` when given, with `environment` added to this process's) to completion.
    public static func run(_ tool: String, _ args: [String], cwd: String? = nil, environment: [String: String] = [:]) throws -> Result {
        let path = path(of: tool)
        guard FileManager.default.isExecutableFile(atPath: path) else { throw MissingTool(description: "build the release products first: \(path)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read both pipes at once so a chatty tool cannot block on a full pipe.
        final class Buffer: @unchecked Sendable { var data = Data() }
        let errData = Buffer(), group = DispatchGroup()
        DispatchQueue.global().async(group: group) { errData.data = err.fileHandleForReading.readDataToEndOfFile() }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errData.data, as: UTF8.self))
    }

    /// A fresh directory under the system temporary directory.
    public static func temporaryDirectory(_ prefix: String) throws -> String {
        let dir = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}
