import Foundation
import NN
import TestSupport
import XCTest

/// `mpirun -np 2 det-train` as a user runs it, from the outside: a killed rank, Ctrl-C, resuming with another
/// number of processes. Needs Open MPI's mpirun (scripts/setup.sh installs openmpi-bin).
final class MPIJobTests: XCTestCase {
    /// A job started in the background; stdout and stderr go to files (read them after it ends).
    struct Job {
        let process: Process
        let stderrPath: String
        var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

        /// Waits up to `seconds` for the job to end; false if it is still running.
        func wait(seconds: Double) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < deadline { usleep(100_000) }
            return !process.isRunning
        }

        /// The exit status once ended; nil while running.
        var status: Int32? { process.isRunning ? nil : process.terminationStatus }
    }

    static func mpirun() throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(dir)/mpirun"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw XCTSkip("mpirun not found: scripts/setup.sh installs openmpi-bin")
    }

    /// `mpirun -np ranks det-train args` (or det-train alone for ranks = 1), with run-as-root allowed.
    func start(ranks: Int, _ args: [String], mpiOptions: [String] = [], in dir: String) throws -> Job {
        let tool = ToolRunner.path(of: "det-train")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: tool), "build the release products first: \(tool)")
        let p = Process()
        if ranks > 1 {
            p.executableURL = URL(fileURLWithPath: try Self.mpirun())
            p.arguments = ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"] + mpiOptions + [tool] + args
        } else {
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        let err = "\(dir)/stderr-\(UUID().uuidString).txt"
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: err)
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        try p.run()
        return Job(process: p, stderrPath: err)
    }

    /// Iteration records in a work dir's log so far.
    func loggedIterations(_ work: String) -> Int {
        ((try? String(contentsOfFile: "\(work)/log.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains("\"lr\"") }.count
    }

    /// Waits (up to two minutes) until the job has logged two iterations, so that it is training.
    func waitUntilTraining(_ job: Job, in dir: String) {
        let started = Date()
        while loggedIterations("\(dir)/work") < 2 && job.process.isRunning && Date().timeIntervalSince(started) < 120 { usleep(50_000) }
        XCTAssertTrue(job.process.isRunning, "the job ended early: \(job.stderr)")
    }

    /// The pid of rank `rank` among mpirun's children (each rank's environment names it).
    func pid(ofRank rank: Int, under mpirun: Int32) -> Int32? {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(name), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, Int32(fields[1]) == mpirun,
                  let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            if env.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=\(rank)" }) { return pid }
        }
        return nil
    }

    /// A tiny detector on 64×64 shapes that would train for a long time, logging every iteration.
    func longRun(_ dir: String, maxIters: Int = 100_000) throws -> [String] {
        let shapes = "\(dir)/shapes"
        if !FileManager.default.fileExists(atPath: shapes) {
            let r = try ToolRunner.run("make-shapes", ["--out", shapes, "--size", "64", "--train", "32", "--val", "2"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        return ["--work-dir", "\(dir)/work", "--set", "model.backbone.base_width=8", "--set", "model.neck.out_channels=32",
                "--set", "model.bbox_head.in_channels=32", "--set", "model.bbox_head.feat_channels=32", "--set", "data.img_scale=[64,64]",
                "--set", #"data.shapes={"size": 64, "train_count": 32, "val_count": 2, "root": "\#(shapes)"}"#,
                "--set", #"runner={"type": "IterBasedRunner", "max_iters": \#(maxIters)}"#, "--set", "log_config.interval=1",
                "--set", "checkpoint_config.interval=100000", "--set", "evaluation.interval=100000", "--set", "lr_config.step=[100000]"]
    }

    /// Killing one rank ends the job within a minute, the other rank saying which rank stopped.
    func testKillingOneRankStopsTheOtherWithAMessage() throws {
        let dir = try ToolRunner.temporaryDirectory("mpi-kill")
        let job = try start(ranks: 2, try longRun(dir), in: dir)
        defer { if job.process.isRunning { job.process.terminate() } }
        waitUntilTraining(job, in: dir)
        let victim = try XCTUnwrap(pid(ofRank: 1, under: job.process.processIdentifier), "rank 1 not found")
        let killed = Date()
        kill(victim, SIGKILL)
        XCTAssertTrue(job.wait(seconds: 60), "the job still runs a minute after rank 1 was killed")
        XCTAssertLessThan(Date().timeIntervalSince(killed), 60)
        XCTAssertNotEqual(job.status, 0)
        XCTAssertTrue(job.stderr.contains("det-train: error: rank 0: rank 1 (pid \(victim)) has stopped"), job.stderr)
    }

    /// Ctrl-C in a terminal: SIGINT reaches mpirun and every rank at once, while the ranks compute. Every run stops
    /// with one report and a checkpoint. Signals used to run their handler on whichever thread the kernel picked,
    /// inside kernels and Open MPI, and about one rank in ten then died of heap corruption; they are now taken on one
    /// idle thread (`Interrupts`). Five runs, each stopped a few iterations in.
    func testCtrlCInATerminalStopsEveryRankCleanly() throws {
        for run in 1...5 {
            let dir = try ToolRunner.temporaryDirectory("mpi-sigint-\(run)")
            let job = try start(ranks: 2, try longRun(dir), in: dir)
            defer { if job.process.isRunning { job.process.terminate() } }
            waitUntilTraining(job, in: dir)
            let ranks = [0, 1].compactMap { pid(ofRank: $0, under: job.process.processIdentifier) }
            XCTAssertEqual(ranks.count, 2, "ranks not found")
            kill(job.process.processIdentifier, SIGINT)
            for r in ranks { kill(r, SIGINT) }
            XCTAssertTrue(job.wait(seconds: 60), "run \(run): the job still runs a minute after Ctrl-C")
            XCTAssertEqual(job.stderr.split(separator: "\n").filter { $0.contains("interrupted after iteration") }.count, 1,
                           "run \(run): \(job.stderr)")
            XCTAssertFalse(job.stderr.contains("crashed") || job.stderr.contains("corrupt") || job.stderr.contains("signal"),
                           "run \(run): \(job.stderr)")
            XCTAssertNotNil(try? SafeTensors.read(path: "\(dir)/work/latest.safetensors"), "run \(run): no checkpoint")
        }
    }

    /// Ctrl-C on mpirun (passed on to the ranks as SIGTERM): every rank stops at the same iteration, rank 0 saves one
    /// checkpoint and reports once. Resuming it needs the same number of processes; with it, training continues.
    func testCtrlCSavesOneCheckpointAndResumesOnlyWithTheSameRanks() throws {
        let dir = try ToolRunner.temporaryDirectory("mpi-interrupt")
        // On Ctrl-C mpirun waits this long, sends SIGTERM, and sends SIGKILL as long again later (default 1 s).
        let mpiOptions = ["--mca", "odls_base_sigkill_timeout", "5"]
        let job = try start(ranks: 2, try longRun(dir), mpiOptions: mpiOptions, in: dir)
        defer { if job.process.isRunning { job.process.terminate() } }
        waitUntilTraining(job, in: dir)
        kill(job.process.processIdentifier, SIGINT)
        XCTAssertTrue(job.wait(seconds: 60), "the job still runs a minute after Ctrl-C")
        XCTAssertNotEqual(job.status, 0)
        let lines = job.stderr.split(separator: "\n").filter { $0.contains("interrupted after iteration") }
        XCTAssertEqual(lines.count, 1, job.stderr)
        let iteration = try XCTUnwrap(lines.first.flatMap { line in
            line.range(of: "after iteration ").flatMap { Int(line[$0.upperBound...].prefix(while: \.isNumber)) }
        }, job.stderr)
        let ck = try SafeTensors.read(path: "\(dir)/work/latest.safetensors")
        XCTAssertEqual(ck.metadata["iteration"], "\(iteration)")
        XCTAssertEqual(ck.metadata["world_size"], "2")

        // One process cannot continue it: one clear line.
        let single = try start(ranks: 1, try longRun(dir) + ["--resume"], in: dir)
        XCTAssertTrue(single.wait(seconds: 120))
        XCTAssertEqual(single.status, 1)
        let errors = single.stderr.split(separator: "\n").filter { $0.contains("error") }
        XCTAssertEqual(errors.count, 1, single.stderr)
        XCTAssertTrue(single.stderr.contains("was written by 2 processes and this run has 1; resume with the same number (mpirun -np 2)"),
                      single.stderr)
        // Two can: two more iterations, then a clean end.
        let resumed = try start(ranks: 2, try longRun(dir, maxIters: iteration + 2) + ["--resume"], in: dir)
        XCTAssertTrue(resumed.wait(seconds: 120))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try SafeTensors.read(path: "\(dir)/work/latest.safetensors").metadata["iteration"], "\(iteration + 2)")
    }
}
