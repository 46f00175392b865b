import Cluster
import Engine
import Experiments
import Foundation
import TestSupport
import Testing

func lastJSONLine(_ r: CLI.Result) throws -> [String: Any] {
  try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
}

@Suite("Cluster: job graphs")
struct JobGraphTests {
  func phase(_ id: String, _ deps: [String] = []) -> Phase {
    Phase(
      id: id, kind: "level", arguments: ["lottery", id], dependencies: deps, marker: "/nonexistent/\(id)")
  }

  @Test("waves follow dependencies; cycles, duplicates and unknown dependencies are refused")
  func waves() throws {
    let g = try JobGraph(
      command: [], phases: [phase("a"), phase("b", ["a"]), phase("c"), phase("d", ["b", "c"])])
    #expect(try g.waves().map { $0.map(\.id) } == [["a", "c"], ["b"], ["d"]])
    var done = g
    done.phases[0].done = true
    #expect(try done.waves().map { $0.map(\.id) } == [["b", "c"], ["d"]])
    #expect(throws: GraphError.self) {
      try JobGraph(command: [], phases: [phase("a", ["b"]), phase("b", ["a"])])
    }
    #expect(throws: GraphError.self) { try JobGraph(command: [], phases: [phase("a"), phase("a")]) }
    #expect(throws: GraphError.self) { try JobGraph(command: [], phases: [phase("a", ["z"])]) }
  }

  @Test("restricting a command: options with values, = forms and flags are removed")
  func arguments() {
    let a = [
      "lottery", "--model", "m", "--levels", "3", "--replicates=2", "--json", "--threads", "4", "--lr", "0.1",
    ]
    #expect(
      Arguments.removing(["--levels", "--replicates", "--threads"], flags: ["--json"], from: a)
        == ["lottery", "--model", "m", "--lr", "0.1"])
  }

  @Test("default threads: the affinity mask's CPUs")
  func threads() {
    #expect(MachineInfo.allowedCPUs(status: "Name:\tx\nCpus_allowed_list:\t0-3,8,10-11\n") == 7)
    #expect(MachineInfo.allowedCPUs(status: "Cpus_allowed_list:\t5\n") == 1)
    #expect(MachineInfo.allowedCPUs(status: "nothing\n") == nil)
    #expect((MachineInfo.allowedCPUs() ?? 1) >= 1)
  }
}

@Suite("Cluster: lth plan and lth run", .serialized, .tags(.endToEnd), .endToEnd)
struct LocalRunTests {
  static let lottery = [
    "lottery", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1",
    "--training-steps", "3ep", "--eval-every", "3ep", "--replicates", "2", "--levels", "2",
  ]

  func root(_ out: String) throws -> String {
    out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first { $0.hasPrefix("lottery_") }!
  }

  func results(_ out: String) throws -> NSDictionary {
    Results.reproducible(try lastJSONLine(try CLI.run(["results", try root(out), "--json"]))) as! NSDictionary
  }

  @Test("plan: phases, dependencies, waves, and what is done")
  func plan() throws {
    let out = CLI.tempDir()
    let cmd = Self.lottery + ["--output", out]
    let g = try lastJSONLine(try CLI.run(["plan", "--json"] + cmd))
    let phases = g["phases"] as! [[String: Any]]
    #expect(phases.count == 6)
    #expect(g["waves"] as! [[String]] == [["r1.L0", "r2.L0"], ["r1.L1", "r2.L1"], ["r1.L2", "r2.L2"]])
    let r2l2 = phases.first { $0["id"] as? String == "r2.L2" }!
    #expect(r2l2["dependencies"] as! [String] == ["r2.L1"])
    let args = r2l2["arguments"] as! [String]
    #expect(args.suffix(4) == ["--replicate", "2", "--levels", "2"] && !args.contains("--replicates"))
    // Replicate 1 to level 1: its phases are done, the rest still to run.
    #expect(
      try CLI.run(
        Array(Self.lottery.dropLast(4)) + ["--replicate", "1", "--levels", "1", "--output", out, "--quiet"]
      ).status == 0)
    let after = try lastJSONLine(try CLI.run(["plan", "--json"] + cmd))
    let done = (after["phases"] as! [[String: Any]]).filter { $0["done"] as! Bool }.map {
      $0["id"] as! String
    }
    #expect(done == ["r1.L0", "r1.L1"])
    #expect(after["waves"] as! [[String]] == [["r1.L2", "r2.L0"], ["r2.L1"], ["r2.L2"]])
    let text = try CLI.run(["plan"] + cmd)
    #expect(text.stdout.hasPrefix("6 phases, 2 done, 4 to run"))
    // prune-init and lmc: independent phases.
    let pai = try lastJSONLine(
      try CLI.run(
        [
          "plan", "--json", "prune-init", "--model", "mnist_lenet_64_32", "--dataset", "synthetic",
          "--method", "snip",
          "--densities", "0.5,0.1", "--replicates", "2", "--output", out,
        ]))
    #expect((pai["waves"] as! [[String]]).map(\.count) == [4])
    let lmc = try lastJSONLine(
      try CLI.run(
        [
          "plan", "--json", "lmc", "--model", "mnist_lenet_64_32", "--dataset", "synthetic",
          "--subsample-fraction", "0.1",
          "--training-steps", "3ep", "--spawn-steps", "0,1ep", "--output", out,
        ]))
    #expect((lmc["phases"] as! [[String: Any]]).map { $0["id"] as! String } == ["r1.k0", "r1.k10"])
    // A branch plans the lottery levels it needs and one branch phase after each.
    let branch = try lastJSONLine(
      try CLI.run(
        ["plan", "--json", "branch", "random-reinit"] + Self.lottery.dropFirst().dropLast(2) + [
          "--levels", "0,2", "--output", out,
        ]))
    let bp = branch["phases"] as! [[String: Any]]
    #expect(bp.count == 6 + 4)
    let b22 = bp.first { $0["id"] as? String == "r2.L2.random-reinit" }!
    #expect(b22["dependencies"] as! [String] == ["r2.L2"])
    #expect((b22["arguments"] as! [String]).prefix(2) == ["branch", "random-reinit"])
    let m = bp.first { $0["id"] as? String == "r2.L2" }!
    #expect(
      (m["arguments"] as! [String]).first == "lottery" && !(m["arguments"] as! [String]).contains("0,2"))
    expectOneLineError(
      try CLI.run(["plan", "train", "--model", "mnist_lenet_64_32"]), "not an experiment command")
    expectOneLineError(try CLI.run(["plan"]), "give an experiment command")
  }

  @Test("run --jobs 2 equals the plain command; two processes on one experiment share it by phase locks")
  func runJobs() throws {
    let ref = CLI.tempDir()
    #expect(try CLI.run(Self.lottery + ["--output", ref, "--quiet", "--threads", "2"]).status == 0)
    let refResults = try results(ref)

    let out = CLI.tempDir()
    let r = try CLI.run(["run", "--jobs", "2", "--threads", "2"] + Self.lottery + ["--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("6 phases, 6 to run, 2 at a time x 1 thread"))
    #expect(try results(out) == refResults)
    // Nothing left: a second run does no work.
    let again = try CLI.run(["run", "--jobs", "2"] + Self.lottery + ["--output", out])
    #expect(again.status == 0 && again.stdout.contains("6 phases, 0 to run"))

    // Two plain commands on one experiment at once (replicate 1 and replicate 2, and the
    // whole experiment beside them): no "in use" refusal, and the same results.
    let shared = CLI.tempDir()
    let base =
      Array(Self.lottery.dropLast(4)) + ["--levels", "2", "--output", shared, "--quiet", "--threads", "1"]
    let procs = try [["--replicate", "1"], ["--replicate", "2"], ["--replicates", "2"]].map {
      extra -> Process in
      let p = Process()
      p.executableURL = URL(fileURLWithPath: CLI.binary)
      p.arguments = base + extra
      p.standardOutput = FileHandle.nullDevice
      try p.run()
      return p
    }
    for p in procs { p.waitUntilExit() }
    #expect(procs.allSatisfy { $0.terminationStatus == 0 })
    #expect(try results(shared) == refResults)

    // lth run of a branch command: the lottery and its branch in one graph, as the two
    // commands run one after the other.
    let twoSteps = CLI.tempDir()
    let flags = Array(Self.lottery.dropFirst().dropLast(2))
    #expect(
      try CLI.run(["lottery"] + flags + ["--levels", "2", "--output", twoSteps, "--quiet"]).status == 0)
    #expect(
      try CLI.run(
        ["branch", "random-reinit"] + flags + ["--levels", "1-2", "--output", twoSteps, "--quiet"]
      ).status == 0)
    let oneGraph = CLI.tempDir()
    let rb = try CLI.run(
      ["run", "--jobs", "2", "branch", "random-reinit"] + flags + ["--levels", "1-2", "--output", oneGraph])
    #expect(rb.status == 0, "\(rb.stderr)")
    #expect(try results(oneGraph) == results(twoSteps))

    // A scaling sweep: one lottery graph per point; lth plan creates nothing, lth run
    // gives the sweep's own results.
    let sweepFlags = [
      "scaling", "sweep", "--family", "mnist_lenet_64_32", "--width-factors", "0.5,1", "--data-fractions",
      "0.1",
      "--levels", "1", "--dataset", "synthetic", "--training-steps", "3ep",
    ]
    let planned = CLI.tempDir()
    let sp = try lastJSONLine(try CLI.run(["plan", "--json"] + sweepFlags + ["--output", planned]))
    #expect((sp["waves"] as! [[String]]).map(\.count) == [2, 2])
    #expect(try FileManager.default.contentsOfDirectory(atPath: planned).isEmpty)
    let viaRun = CLI.tempDir()
    let viaSweep = CLI.tempDir()
    #expect(try CLI.run(["run", "--jobs", "2", "--quiet"] + sweepFlags + ["--output", viaRun]).status == 0)
    #expect(try CLI.run(sweepFlags + ["--output", viaSweep, "--quiet"]).status == 0)
    func pointResults(_ out: String) throws -> NSDictionary {
      let sweep =
        out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first {
          $0.hasPrefix("scaling_")
        }!
      var o: [String: Any] = [:]
      for p in try ScalingManifest.read(sweep).points {
        o[p.run] = Results.reproducible(
          try lastJSONLine(try CLI.run(["results", sweep + "/" + p.run, "--json"])))
      }
      return o as NSDictionary
    }
    #expect(try pointResults(viaRun) == pointResults(viaSweep))

    // Inside a Slurm job the default thread count is the job's.
    let slurm = try CLI.run(["run"] + Self.lottery + ["--output", out], shellPrefix: "SLURM_CPUS_PER_TASK=3")
    #expect(slurm.stdout.contains("1 at a time x 3 threads"), "\(slurm.stdout)")
  }
}

@Suite("Cluster: preemption (SIGTERM)", .serialized, .tags(.endToEnd), .endToEnd)
struct PreemptionTests {
  /// A SIGTERM handled on a thread inside oneDNN's sgemm corrupted the heap (about one stop
  /// in ten under glibc's malloc checks): the training threads block it, and one idle
  /// thread takes it (``Training/StopSignal/install()``).
  @Test("SIGTERM is taken by an idle thread: the training and pool threads block it")
  func sigtermThread() throws {
    let out = CLI.tempDir()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: CLI.binary)
    p.arguments = [
      "train", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.2",
      "--training-steps", "400ep", "--eval-every", "400ep", "--quiet", "--threads", "3", "--output", out,
    ]
    p.standardOutput = FileHandle.nullDevice
    let err = Pipe()
    p.standardError = err
    try p.run()
    // Once it trains (a checkpoint exists), read every thread's blocked-signal mask.
    let deadline = Date().addingTimeInterval(60)
    func training() -> Bool {
      let runs = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
      return runs.contains { FileManager.default.fileExists(atPath: "\(out)/\($0)/checkpoint.safetensors") }
    }
    while p.isRunning && !training() && Date() < deadline { usleep(5000) }
    let pid = p.processIdentifier
    var blocked: [Int32: Bool] = [:]
    for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
      guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigBlk:") }),
        let mask = UInt64(line.dropFirst("SigBlk:".count).trimmingCharacters(in: .whitespaces), radix: 16)
      else { continue }
      blocked[Int32(task)!] = mask & (1 << (UInt64(SIGTERM) - 1)) != 0
    }
    let running = p.isRunning
    kill(pid, SIGTERM)
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(running, "the run ended before its threads were read: \(text)")
    #expect(blocked[pid] == true, "the training thread takes SIGTERM: \(blocked)")
    // The main thread, 2 pool workers, OpenBLAS's thread(s) and the receiver at least.
    #expect(blocked.count >= 4, "\(blocked)")
    #expect(blocked.values.contains(false), "no thread takes SIGTERM: \(blocked)")
    #expect(p.terminationStatus == 143, "\(text)")
  }

  @Test("SIGTERM mid-training: a checkpoint at that step, status 143, one line; the rerun is bit-identical")
  func sigterm() throws {
    let cmd = [
      "lottery", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.2",
      "--training-steps", "150ep", "--eval-every", "50ep", "--levels", "1", "--quiet", "--threads", "2",
    ]
    let ref = CLI.tempDir()
    let t0 = Date()
    #expect(try CLI.run(cmd + ["--output", ref]).status == 0)
    let duration = Date().timeIntervalSince(t0)
    func results(_ out: String) throws -> NSDictionary {
      let root =
        out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first {
          $0.hasPrefix("lottery_")
        }!
      return Results.reproducible(try lastJSONLine(try CLI.run(["results", root, "--json"]))) as! NSDictionary
    }
    // TERM once training has begun (level 0's first checkpoint exists: the handler is in
    // place), at a random moment after that; then again in the resumed run; then to the end.
    var rng = RandomStream(seed: 11, purpose: "sigterm")
    let out = try CLI.killAndRerun(kills: 2, duration: duration, rng: &rng, fraction: 0.05...0.4) { out, t in
      let p = Process()
      p.executableURL = URL(fileURLWithPath: CLI.binary)
      p.arguments = cmd + ["--output", out]
      let err = Pipe()
      p.standardError = err
      p.standardOutput = FileHandle.nullDevice
      try p.run()
      if let t {
        let deadline = Date().addingTimeInterval(60)
        func started() -> Bool {
          let lotteries = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
          return lotteries.contains { l in
            FileManager.default.fileExists(
              atPath: "\(out)/\(l)/replicate_1/level_0/main/checkpoint.safetensors")
          }
        }
        while p.isRunning && !started() && Date() < deadline { usleep(5000) }
        usleep(UInt32(t * 1e6))
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
      }
      let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      p.waitUntilExit()
      if p.terminationStatus == 143 {
        #expect(
          text.split(separator: "\n").count == 1 && text.contains("stopped by SIGTERM at step"), "\(text)")
        return false
      }
      #expect(p.terminationStatus == 0 && p.terminationReason == .exit, "\(text)")
      return true
    }.output
    #expect(try results(out) == results(ref))
  }
}

/// Against a real Slurm: `make test-slurm` starts one (Tests/Slurm/cluster.sh) and sets
/// LTH_SLURM=1 and SLURM_CONF.
@Suite(
  "SlurmTests: lth submit and lth status against a real single-node Slurm", .serialized,
  .enabled(if: ProcessInfo.processInfo.environment["LTH_SLURM"] == "1", "make test-slurm runs these"), .tags(.endToEnd), .endToEnd)
struct SlurmTests {
  /// A 2-replicate, 3-level lottery with its random-reinit branch at every level: the
  /// branch command plans the lottery levels it needs, so one submission runs both.
  static let lottery = [
    "branch", "random-reinit", "--model", "mnist_lenet_64_32", "--dataset", "synthetic",
    "--subsample-fraction",
    "0.1", "--training-steps", "3ep", "--eval-every", "3ep", "--replicates", "2", "--levels", "0-3",
  ]

  func root(_ out: String) throws -> String {
    out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first { $0.hasPrefix("lottery_") }!
  }

  func results(_ out: String) throws -> NSDictionary {
    Results.reproducible(try lastJSONLine(try CLI.run(["results", try root(out), "--json"]))) as! NSDictionary
  }

  func states(_ root: String) throws -> [String: String] {
    let s = try lastJSONLine(try CLI.run(["status", root, "--json"]))
    var out: [String: String] = [:]
    for p in s["phases"] as! [[String: Any]] { out[p["id"] as! String] = p["state"] as? String }
    return out
  }

  /// Polls until nothing is running or pending (at most `seconds`).
  func settle(_ root: String, seconds: Double = 240) throws -> [String: String] {
    let end = Date().addingTimeInterval(seconds)
    while true {
      let s = try states(root)
      if !s.values.contains(where: { $0 == "running" || $0 == "pending" }) || Date() > end { return s }
      usleep(300_000)
    }
  }

  /// A folder outside /tmp where possible (Slurm's node sees it either way on one node).
  func dir() -> String {
    let base =
      URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().path + "/.build/slurm-test"
    let d = base + "/" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
  }

  @Test(
    "a 2-replicate, 3-level lottery through Slurm equals lth run --jobs 2; cancel and failure, status, resubmit"
  )
  func submitAndResubmit() throws {
    let local = dir()
    #expect(try CLI.run(["run", "--jobs", "2", "--quiet"] + Self.lottery + ["--output", local]).status == 0)
    let ref = try results(local)

    let out = dir()
    let s = try CLI.run(["submit", "--slurm"] + Self.lottery + ["--output", out])
    #expect(s.status == 0, "\(s.stderr)")
    #expect(s.stdout.split(separator: "\n").filter { $0.hasPrefix("job ") }.count == 5)
    let r = try root(out)
    let done = try settle(r)
    #expect(done.count == 16 && done.values.allSatisfy { $0 == "done" }, "\(done)")
    let levels = try lastJSONLine(try CLI.run(["results", r, "--json"]))["levels"] as! [[String: Any]]
    #expect(
      levels.count == 4
        && levels.allSatisfy { ($0["branches"] as! [String: Any]).keys.sorted() == ["random-reinit"] })
    #expect(try results(out) == ref)
    let again = try CLI.run(["submit", "--slurm"] + Self.lottery + ["--output", out])
    #expect(again.stdout.contains("nothing to submit"), "\(again.stdout)")

    // A failure (a file where replicate 2's level 1 folder goes) and a cancelled task.
    let broken = dir()
    try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
    let plan = try lastJSONLine(try CLI.run(["plan", "--json"] + Self.lottery + ["--output", broken]))
    let br = plan["root"] as! String
    try FileManager.default.createDirectory(atPath: br + "/replicate_2", withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: br + "/replicate_2/level_1", contents: Data("x".utf8))
    let sub = try CLI.run(["submit", "--slurm"] + Self.lottery + ["--output", broken])
    #expect(sub.status == 0, "\(sub.stderr)")
    let firstJob = sub.stdout.split(separator: "\n").first { $0.hasPrefix("job ") }!.split(separator: " ")[1]
      .dropLast()
    let c = Process()
    c.executableURL = URL(fileURLWithPath: Slurm.which("scancel")!)
    c.arguments = ["\(firstJob)_0"]
    try c.run()
    c.waitUntilExit()
    let mid = try settle(br)
    #expect(mid.values.contains("failed"), "\(mid)")
    #expect(mid.values.contains { $0 != "done" })
    let text = try CLI.run(["status", br])
    #expect(text.stdout.contains("failed"), "\(text.stdout)")
    // Remove the obstacle and submit again: only what is missing runs, and the results are
    // those of an uninterrupted run.
    try FileManager.default.removeItem(atPath: br + "/replicate_2/level_1")
    let resub = try CLI.run(["submit", "--slurm"] + Self.lottery + ["--output", broken])
    #expect(resub.status == 0, "\(resub.stderr)")
    let end = try settle(br)
    #expect(end.values.allSatisfy { $0 == "done" }, "\(end)")
    #expect(try results(broken) == ref)
  }

  @Test("preemption: TERM to a running task checkpoints, requeues it, and it finishes with identical results")
  func preemption() throws {
    let cmd = [
      "lottery", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.2",
      "--training-steps", "150ep", "--eval-every", "50ep", "--levels", "1",
    ]
    let ref = dir()
    #expect(try CLI.run(cmd + ["--output", ref, "--quiet"]).status == 0)
    let out = dir()
    let s = try CLI.run(["submit", "--slurm"] + cmd + ["--output", out])
    #expect(s.status == 0, "\(s.stderr)")
    let job = s.stdout.split(separator: "\n").first { $0.hasPrefix("job ") }!.split(separator: " ")[1]
      .dropLast()
    let r = try root(out)
    // Once level 0 trains inside Slurm, TERM its batch shell (what --signal=B:TERM does).
    let deadline = Date().addingTimeInterval(120)
    while !FileManager.default.fileExists(atPath: r + "/replicate_1/level_0/main/checkpoint.safetensors")
      && Date() < deadline
    {
      usleep(20_000)
    }
    usleep(300_000)
    let c = Process()
    c.executableURL = URL(fileURLWithPath: Slurm.which("scancel")!)
    c.arguments = ["--batch", "--signal=TERM", "\(job)_0"]
    try c.run()
    c.waitUntilExit()
    #expect(c.terminationStatus == 0)
    let end = try settle(r)
    #expect(end.values.allSatisfy { $0 == "done" }, "\(end)")
    #expect(try results(out) == results(ref))
    let log = (try? String(contentsOfFile: "\(r)/slurm/logs/\(job)_0.out", encoding: .utf8)) ?? ""
    #expect(log.contains("stopped by SIGTERM at step"), "\(log)")
  }

  @Test("bad input: no sbatch, a refused job, no submission: one line, non-zero exit")
  func badInput() throws {
    let out = dir()
    expectOneLineError(
      try CLI.run(
        ["submit", "--slurm"] + Self.lottery + ["--output", out], shellPrefix: "PATH=/nonexistent"),
      "sbatch is not on PATH")
    let refused = try CLI.run(
      ["submit", "--slurm", "--partition", "nosuchpartition"] + Self.lottery + ["--output", out])
    #expect(refused.status != 0)
    #expect(
      refused.stderr.contains("sbatch refused wave") && refused.stderr.lowercased().contains("partition"),
      "\(refused.stderr)")
    expectOneLineError(try CLI.run(["submit"] + Self.lottery + ["--output", out]), "give --slurm")
    expectOneLineError(
      try CLI.run(["submit", "--slurm", "train", "--model", "x"]), "not an experiment command")
    expectOneLineError(try CLI.run(["status", out]), "has no Slurm submission")
    // A run folder under /tmp: a warning, not an error.
    let tmp = CLI.tempDir()
    let w = try CLI.run(
      ["submit", "--slurm"] + Self.lottery.dropLast(2) + ["--levels", "0", "--output", tmp])
    #expect(w.status == 0, "\(w.stderr)")
    #expect(w.stderr.contains("usually node-local"), "\(w.stderr)")
  }
}
