import Engine
import Foundation

/// Watches the other ranks on this machine from a thread of its own, so that a rank that dies (killed, crashed, or
/// exited on an error of its own) stops the others at once with a message naming it, wherever they are: inside a
/// collective, or computing a forward pass that would end in one. mpirun would end the job too, but silently and
/// only after its own timeout. Ranks on other machines are covered by the collectives' deadline and by mpirun.
final class PeerMonitor: @unchecked Sendable {
    /// What a rank tells the others about itself at start (plain bytes, exchanged with MPI_Allgather).
    struct Identity {
        var pid: Int32
        /// FNV-1a of the host name: equal on one machine.
        var host: UInt64

        static func current() -> Identity {
            var name = [CChar](repeating: 0, count: 256)
            gethostname(&name, name.count - 1)
            var h: UInt64 = 0xCBF2_9CE4_8422_2325
            for byte in name.prefix(while: { $0 != 0 }) { h = (h ^ UInt64(UInt8(bitPattern: byte))) &* 0x100_0000_01B3 }
            return Identity(pid: getpid(), host: h)
        }
    }

    let rank: Int
    private let lock = NSLock()
    private var stopped = false

    init(rank: Int) { self.rank = rank }

    /// Starts watching the peers that share this machine (same host, another pid).
    func start(peers: [Identity]) {
        let me = Identity.current()
        let local = peers.enumerated().filter { $0.element.host == me.host && $0.element.pid != me.pid }.map { ($0.offset, $0.element.pid) }
        guard !local.isEmpty else { return }
        let thread = Thread { [self] in
            while true {
                usleep(200_000)
                lock.lock()
                let done = stopped
                lock.unlock()
                if done { return }
                for (peerRank, pid) in local where !Self.isRunning(pid) {
                    ProcessGroup.fatal("rank \(rank): rank \(peerRank) (pid \(pid)) has stopped (killed, crashed or failed: see its "
                                       + "message above); stopping this rank too")
                }
            }
        }
        thread.name = "MPI peer monitor"
        thread.start()
    }

    /// Before a clean end, when peers may exit first.
    func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
    }

    /// Whether `pid` is a live process: present in /proc and not a zombie waiting for mpirun to reap it.
    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return kill(pid, 0) == 0 }
        // "pid (comm) S ...": the state follows the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
        return state != "Z" && state != "X"
    }
}
