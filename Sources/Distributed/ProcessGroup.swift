import CMPI
import Engine
import Foundation

/// The processes of one data-parallel job that `mpirun` (Open MPI) started: this process's rank, the job's size, and
/// the collectives training needs, each with a deadline so a rank that died or hangs never leaves the others waiting
/// forever.
///
/// Only `world` makes one, and only when mpirun started two or more processes: a plain process (or `mpirun -np 1`)
/// never initialises MPI, so single-process runs are exactly what they were before this layer existed.
///
/// Every collective is started non-blocking and polled (spinning for the first half millisecond, then sleeping in
/// short steps): small ones, such as SyncBN's per-layer statistics, complete in microseconds even with more ranks
/// than cores, a long wait (rank 0 evaluating) costs no CPU, and the wait can give up. Errors come back as return
/// codes (`MPI_ERRORS_RETURN`) and are thrown as one-line `KitError`s naming the rank and the collective.
public final class ProcessGroup: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// Seconds a collective may wait for the other ranks before this rank gives up (`ACMIX_MPI_TIMEOUT`, default
    /// 1800: long enough for rank 0 to score a COCO-size validation split while the others wait; a rank that dies
    /// on this machine is noticed at once by the peer monitor, and mpirun ends a job whose rank exits).
    public var timeout: Double
    /// Rank 0 alone logs, draws progress, writes checkpoints and plots, and gathers evaluations.
    public var isMain: Bool { rank == 0 }

    let comm: MPI_Comm
    let monitor: PeerMonitor
    private var finalized = false
    /// Set when every rank stopped at the same point for the same reason (Ctrl-C, a non-finite loss, a failed
    /// resume): such a job shuts MPI down cleanly and only rank 0 reports the error.
    public private(set) var failureIsShared = false

    /// The default deadline of a collective, in seconds.
    public static let defaultTimeout = 1800.0

    /// The job this process belongs to; nil unless mpirun started it with two or more processes. The first use
    /// starts MPI.
    public static let world: ProcessGroup? = launch()

    /// `world` if it has been started, without starting it (for error reporting).
    nonisolated(unsafe) public private(set) static var started: ProcessGroup?

    /// Ranks in the job according to mpirun's environment (1 when not started by mpirun).
    public static var launchedSize: Int {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"].flatMap { Int($0) } ?? 1
    }

    /// This process's rank according to mpirun's environment (0 when not started by mpirun); readable before MPI
    /// starts, so config errors, which every rank finds alike, are printed by rank 0 alone.
    public static var launchedRank: Int {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap { Int($0) } ?? 0
    }

    /// `ACMIX_MPI_TIMEOUT` checked: a positive number of seconds, or the default when unset.
    public static func configuredTimeout() throws -> Double {
        guard let text = ProcessInfo.processInfo.environment["ACMIX_MPI_TIMEOUT"] else { return defaultTimeout }
        guard let t = Double(text), t > 0, t.isFinite else {
            throw KitError.usage("ACMIX_MPI_TIMEOUT: '\(text)' is not a positive number of seconds")
        }
        return t
    }

    private static func launch() -> ProcessGroup? {
        guard launchedSize >= 2 else { return nil }
        do {
            started = try ProcessGroup(timeout: configuredTimeout())
            return started
        } catch {
            fatal(describe(error))
        }
    }

    private init(timeout: Double) throws {
        self.timeout = timeout
        var provided: Int32 = 0
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        // Only the thread that runs the trainer calls MPI, one call at a time.
        let rc = MPI_Init_thread(&argc, &argv, cmpi_thread_serialized(), &provided)
        guard rc == MPI_SUCCESS else { throw KitError.training("MPI_Init_thread failed (\(Self.errorString(rc)))") }
        comm = cmpi_comm_world()
        MPI_Comm_set_errhandler(comm, cmpi_errors_return())
        var r: Int32 = 0, n: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &n)
        rank = Int(r); size = Int(n)
        monitor = PeerMonitor(rank: rank)
        // Each rank's pid and host, so a rank can notice at once that a peer on its machine has died.
        var me = PeerMonitor.Identity.current()
        var all = [PeerMonitor.Identity](repeating: me, count: size)
        try withUnsafeMutableBytes(of: &me) { mine in
            try all.withUnsafeMutableBytes { table in
                try collective("exchanging process ids at start") { req in
                    MPI_Iallgather(mine.baseAddress, Int32(mine.count), cmpi_byte(), table.baseAddress, Int32(mine.count), cmpi_byte(),
                                   comm, &req)
                }
            }
        }
        monitor.start(peers: all)
        // The machine's cores are shared among the ranks on it, unless ACMIX_NUM_THREADS says otherwise.
        if Threads.configured == nil {
            let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) }
                ?? all.filter { $0.host == me.host }.count
            Threads.count = max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
        }
    }

    // MARK: collectives

    /// Sums `count` floats at `p` over every rank, in place.
    public func allreduceSum(_ p: UnsafeMutablePointer<Float>, count: Int, _ what: @autoclosure () -> String) throws {
        try chunked(count) { start, n in
            try collective(what()) { MPI_Iallreduce(cmpi_in_place(), p + start, n, cmpi_float(), cmpi_sum(), comm, &$0) }
        }
    }

    /// Sums `values` over every rank, in place.
    public func allreduceSum(_ values: inout [Double], _ what: @autoclosure () -> String) throws {
        let count = values.count
        try values.withUnsafeMutableBufferPointer { b in
            try chunked(count) { start, n in
                try collective(what()) { MPI_Iallreduce(cmpi_in_place(), b.baseAddress! + start, n, cmpi_double(), cmpi_sum(), comm, &$0) }
            }
        }
    }

    /// Rank 0's `count` floats at `p` into every rank's.
    public func broadcast(_ p: UnsafeMutablePointer<Float>, count: Int, _ what: @autoclosure () -> String) throws {
        try chunked(count) { start, n in
            try collective(what()) { MPI_Ibcast(p + start, n, cmpi_float(), 0, comm, &$0) }
        }
    }

    /// Rank 0's `values` into every rank's (all ranks pass arrays of the same length).
    public func broadcast(_ values: inout [Double], _ what: @autoclosure () -> String) throws {
        let count = values.count
        try values.withUnsafeMutableBufferPointer { b in
            try chunked(count) { start, n in
                try collective(what()) { MPI_Ibcast(b.baseAddress! + start, n, cmpi_double(), 0, comm, &$0) }
            }
        }
    }

    /// Rank 0's bytes, of any length, on every rank (what the other ranks pass is ignored).
    public func broadcast(bytes: [UInt8], _ what: @autoclosure () -> String) throws -> [UInt8] {
        var length = [Double(bytes.count)]
        try broadcast(&length, what())
        var out = isMain ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        try out.withUnsafeMutableBytes { b in
            try chunked(b.count) { start, n in
                try collective(what()) { MPI_Ibcast(b.baseAddress! + start, n, cmpi_byte(), 0, comm, &$0) }
            }
        }
        return out
    }

    /// Rank 0's string on every rank.
    public func broadcast(_ text: String, _ what: @autoclosure () -> String) throws -> String {
        String(decoding: try broadcast(bytes: Array(text.utf8), what()), as: UTF8.self)
    }

    /// Every rank's bytes, in rank order, on rank 0; an empty list on the others.
    public func gather(bytes: [UInt8], _ what: @autoclosure () -> String) throws -> [[UInt8]] {
        var mine = Int64(bytes.count)
        var lengths = [Int64](repeating: 0, count: size)
        try withUnsafeMutableBytes(of: &mine) { m in
            try lengths.withUnsafeMutableBytes { l in
                try collective(what()) { MPI_Igather(m.baseAddress, 8, cmpi_byte(), l.baseAddress, 8, cmpi_byte(), 0, comm, &$0) }
            }
        }
        let total = lengths.reduce(0, +)
        // MPI counts are 32-bit; evaluation results are far smaller.
        var tooLarge = [isMain && total > Int64(Int32.max) ? 1.0 : 0]
        try broadcast(&tooLarge, what())
        if tooLarge[0] != 0 { throw KitError.training("rank \(rank): \(what()): \(total) bytes to gather, more than MPI's 2 GiB limit") }
        var counts = lengths.map { Int32($0) }, displs = [Int32](repeating: 0, count: size)
        for i in 1..<max(size, 1) { displs[i] = displs[i - 1] + counts[i - 1] }
        var all = [UInt8](repeating: 0, count: isMain ? Int(total) : 0)
        var send = bytes
        try send.withUnsafeMutableBytes { s in
            try all.withUnsafeMutableBytes { a in
                try counts.withUnsafeMutableBufferPointer { c in
                    try displs.withUnsafeMutableBufferPointer { d in
                        try collective(what()) {
                            MPI_Igatherv(s.baseAddress, Int32(s.count), cmpi_byte(), a.baseAddress, c.baseAddress, d.baseAddress, cmpi_byte(),
                                         0, comm, &$0)
                        }
                    }
                }
            }
        }
        guard isMain else { return [] }
        return (0..<size).map { Array(all[Int(displs[$0])..<Int(displs[$0] + counts[$0])]) }
    }

    /// Waits until every rank has arrived.
    public func barrier(_ what: @autoclosure () -> String) throws {
        try collective(what()) { MPI_Ibarrier(comm, &$0) }
    }

    /// Runs `body` on rank 0 alone and makes its outcome every rank's: the other ranks get its error too (thrown as
    /// a shared failure, which only rank 0 reports), so no rank goes on alone into a collective the others skip.
    public func onMain<T>(_ what: String, _ body: () throws -> T?) throws -> T? {
        var result: T?
        var caught: Error?
        if isMain {
            do { result = try body() } catch { caught = error }
        }
        var status = [Double((caught as? KitError)?.exitCode ?? (caught == nil ? 0 : 1))]
        try broadcast(&status, what)
        guard status[0] != 0 else { return result }
        let text = try broadcast(caught.map(describe) ?? "", what)
        failureIsShared = true
        throw caught ?? (status[0] == 2 ? KitError.config(text) : KitError.training(text))
    }

    /// Marks the error being thrown as one every rank reached together (see `failureIsShared`).
    public func markSharedFailure() { failureIsShared = true }

    /// Ends MPI after every rank has arrived; call once, when the job ends normally or with a shared failure.
    /// A rank leaving alone (its own error) must not call it: it exits, and its peers notice.
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        monitor.stop()
        do { try barrier("the final barrier") } catch { Self.fatal(describe(error)) }
        MPI_Finalize()
    }

    /// Ends the process with `code`. After `finalize`, with `_exit` once stdio is flushed: exit() would run the
    /// libraries' exit-time destructors (oneDNN's, OpenBLAS's, Open MPI's) while data-loader workers and the peer
    /// monitor still run beside them. A rank of a CI run once died there, on Ctrl-C, with "double free or corruption"
    /// in a worker thread (not reproduced since).
    public static func exitProcess(_ code: Int32) -> Never {
        guard started?.finalized == true else { exit(code) }
        fflush(nil)
        _exit(code)
    }

    // MARK: internals

    /// Splits `count` elements into pieces MPI can count (Int32) and large collectives into 4 MiB-ish steps, which
    /// Open MPI's non-blocking collectives complete faster than one large message.
    private func chunked(_ count: Int, _ body: (Int, Int32) throws -> Void) throws {
        let step = 1 << 20
        var start = 0
        repeat {
            let n = min(step, count - start)
            try body(start, Int32(n))
            start += n
        } while start < count
    }

    /// Starts a non-blocking collective and polls it to completion within `timeout`.
    func collective(_ what: @autoclosure () -> String, _ start: (inout MPI_Request?) -> Int32) throws {
        var request: MPI_Request?
        var rc = start(&request)
        guard rc == MPI_SUCCESS else { throw failure(what(), rc) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        while true {
            var done: Int32 = 0
            rc = MPI_Test(&request, &done, cmpi_status_ignore())
            guard rc == MPI_SUCCESS else { throw failure(what(), rc) }
            if done != 0 { return }
            let waited = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            if waited > timeout {
                throw KitError.training("rank \(rank): \(what()): no answer from the other ranks in \(Int(timeout)) s "
                    + "(ACMIX_MPI_TIMEOUT); a rank has died or hangs; stopping")
            }
            if waited > 0.01 { usleep(200) } else if waited > 0.0005 { usleep(20) }
        }
    }

    private func failure(_ what: String, _ rc: Int32) -> KitError {
        KitError.training("rank \(rank): \(what) failed: \(Self.errorString(rc)) (has a rank died?)")
    }

    static func errorString(_ rc: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(rc, &buffer, &length)
        return String(cString: buffer)
    }

    /// The tool's name, for messages printed outside its error reporting.
    static var toolName: String { URL(fileURLWithPath: CommandLine.arguments.first ?? "acmix").lastPathComponent }

    /// One line on stderr and exit status 1, for failures where nothing can be thrown (inside a forward pass, on
    /// the monitor thread). MPI is not finalised: mpirun then ends the job.
    static func fatal(_ message: String) -> Never {
        writeStderr("\(toolName): error: \(message)\n")
        _exit(1)
    }
}
