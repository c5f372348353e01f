import Foundation
import Synchronization

/// Ctrl-C (SIGINT), and mpirun's SIGTERM in a data-parallel job, turned into a flag that the training loop checks
/// between iterations.
///
/// A signal handler runs on whichever thread the kernel picks, between any two instructions of what that thread was
/// doing. Data-parallel ranks that got SIGTERM while their threads were inside kernels and Open MPI died of heap
/// corruption ("corrupted size vs. prev_size", a zeroed chunk header freed by oneDNN's sgemm) in about one run in ten
/// of `MPIJobTests`; ranks that trained and ended without a signal never did. So the training tools call `install()`
/// first thing in main, before any thread exists: it blocks both signals in the main thread, which every thread
/// started later inherits (the engine's pool, data-loader workers, Open MPI's), and starts one idle thread that
/// leaves them unblocked. The handler then runs on that thread (or on a library thread started before main, such as
/// OpenBLAS's idle pool), never inside a computation.
public enum Interrupts {
    /// Bit `1 << signal` for each signal `catching` turns into a request now; other signals get their default action.
    private static let caught = Atomic<Int>(0)
    /// Whether a signal arrived while it was being caught.
    private static let received = Atomic<Bool>(false)
    private static let installed = Atomic<Bool>(false)

    /// Whether a caught signal has arrived since `catching` began.
    public static var requested: Bool { received.load(ordering: .acquiring) }

    /// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it starts later) and starts the one
    /// thread that takes them. Call once, from main, before anything starts a thread.
    public static func install() {
        guard !installed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        setHandler(SIGINT); setHandler(SIGTERM)
        var set = signals
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let thread = Thread {
            var set = signals
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            while true { pause() }
        }
        thread.name = "signals"
        thread.start()
    }

    /// Runs `body` with `signals` turned into `requested` instead of ending the process (the flag starts clear).
    /// Without `install()` (a library user's process), the handler is installed here and runs on any thread, as a
    /// plain `signal()` handler would.
    public static func catching<T>(_ signals: [Int32], _ body: () throws -> T) rethrows -> T {
        let mask = signals.reduce(0) { $0 | 1 << Int($1) }
        if !installed.load(ordering: .acquiring) { for s in signals { setHandler(s) } }
        received.store(false, ordering: .releasing)
        let before = caught.exchange(mask, ordering: .acquiringAndReleasing)
        defer { caught.store(before, ordering: .releasing) }
        return try body()
    }

    private static var signals: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        return set
    }

    /// The handler: records a caught signal; any other gets its default action (the process ends as if no handler
    /// had been installed). Only async-signal-safe calls.
    private static func setHandler(_ signal: Int32) {
        _ = caught.load(ordering: .relaxed); _ = received.load(ordering: .relaxed)   // initialised outside the handler
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { sig in
            if Interrupts.caught.load(ordering: .acquiring) & (1 << Int(sig)) != 0 {
                Interrupts.received.store(true, ordering: .releasing)
            } else {
                Glibc.signal(sig, SIG_DFL)
                raise(sig)   // delivered when the handler returns: the default action
            }
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        sigaction(signal, &action, nil)
    }
}
