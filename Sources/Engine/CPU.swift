import CDNNL
import Foundation

/// What this CPU can do, read once: the model name and feature flags the kernel reports (/proc/cpuinfo, so only
/// features the OS enabled count), and the ISA oneDNN's JIT will use. The engine's kernel choices (`GEMMPolicy`,
/// bf16 support) read it; `bench` prints it beside every figure.
public struct CPUInfo: Sendable {
    /// An ISA level, ordered: kernels written for a lower level run on every higher one.
    public enum Level: Int, Comparable, Sendable, CustomStringConvertible {
        case generic = 0, avx = 1, avx2 = 2, avx512 = 3
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        public var description: String { ["generic", "avx", "avx2", "avx512"][rawValue] }
    }

    public let modelName: String
    public let flags: Set<String>
    /// oneDNN's effective ISA (`dnnl_get_effective_cpu_isa`), e.g. "avx2", "avx512_core_amx".
    public let oneDNNISA: String

    /// The widest vector level the CPU and OS support (AVX-512 counts with F, BW, VL and DQ, the set every
    /// AVX-512 GEMM kernel needs).
    public var level: Level {
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) { return .avx512 }
        if flags.contains("avx2") && flags.contains("fma") { return .avx2 }
        if flags.contains("avx") { return .avx }
        return .generic
    }

    /// bf16 dot products in hardware: AVX512-BF16 or AMX-BF16.
    public var hasBF16: Bool { flags.contains("avx512_bf16") || flags.contains("amx_bf16") }
    public var hasAMX: Bool { flags.contains("amx_bf16") && flags.contains("amx_tile") }
    public var hasVNNI: Bool { flags.contains("avx512_vnni") || flags.contains("avx_vnni") }

    /// The subset of flags worth naming beside a figure.
    public var summary: String {
        let shown = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"].filter(flags.contains)
        return "\(modelName) [\(shown.joined(separator: " "))]"
    }

    public static let current: CPUInfo = {
        var model = "unknown", flags: Set<String> = []
        if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let key = parts[0].trimmingCharacters(in: .whitespaces), value = parts[1].trimmingCharacters(in: .whitespaces)
                if key == "model name" && model == "unknown" { model = value }
                if key == "flags" && flags.isEmpty { flags = Set(value.split(separator: " ").map(String.init)) }
                if model != "unknown" && !flags.isEmpty { break }
            }
        }
        return CPUInfo(modelName: model, flags: flags, oneDNNISA: isaName(dnnl_get_effective_cpu_isa()))
    }()

    static func isaName(_ isa: dnnl_cpu_isa_t) -> String {
        switch isa {
        case dnnl_cpu_isa_sse41: return "sse41"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        default: return "isa_0x" + String(isa.rawValue, radix: 16)
        }
    }
}
