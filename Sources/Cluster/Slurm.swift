import Foundation
import Storage

/// `lth submit --slurm` and `lth status`: a graph's unfinished phases as Slurm job arrays,
/// one array per wave, each array after the tasks its phases need
/// (`--dependency=afterok:JOB_TASK:...`), with the scripts, the graph and the job ids kept
/// in the run folder (`slurm/`). Re-submitting submits only what is neither finished nor
/// still queued or running. Works without `sacct` (no accounting database needed): a
/// phase is done when its marker exists, running or pending while `squeue` lists its task,
/// failed when it was submitted and is neither.
public enum Slurm {
  public struct Options: Sendable {
    public var partition: String?
    public var time: String?
    public var cpusPerTask: Int
    public var mem: String?
    public var account: String?
    public var extra: [String]
    public init(
      partition: String?, time: String?, cpusPerTask: Int, mem: String?, account: String?, extra: [String]
    ) {
      (self.partition, self.time, self.cpusPerTask, self.mem, self.account, self.extra) =
        (partition, time, cpusPerTask, mem, account, extra)
    }
  }

  /// One submitted array.
  public struct Submission: Codable, Sendable, Equatable {
    public var jobID: String
    public var wave: Int
    public var phases: [String]
    public var script: String
    public var submitted: String
    enum CodingKeys: String, CodingKey {
      case jobID = "job_id"
      case wave, phases, script, submitted
    }
  }

  public static func folder(_ root: String) -> String { root + "/slurm" }

  /// The path of a command on PATH (nil: not found).
  public static func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
      let p = "\(dir)/\(name)"
      if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
  }

  static func run(_ tool: String, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
    guard let path = which(tool) else {
      throw GraphError(
        "\(tool) is not on PATH: install Slurm's client commands (Debian: slurm-client), or run on this machine with lth run --jobs N"
      )
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let (o, e) = (Pipe(), Pipe())
    p.standardOutput = o
    p.standardError = e
    try p.run()
    let out = o.fileHandleForReading.readDataToEndOfFile()
    let err = e.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
  }

  /// `JOB_TASK -> state` of this user's queued and running array tasks (`squeue -r`).
  public static func queue() throws -> [String: String] {
    let r = try run("squeue", ["--me", "-h", "-r", "-o", "%i %T"])
    guard r.status == 0 else {
      throw GraphError(
        "squeue failed: \(r.err.split(separator: "\n").first.map(String.init) ?? "status \(r.status)")")
    }
    var out: [String: String] = [:]
    for line in r.out.split(separator: "\n") {
      let parts = line.split(separator: " ")
      if parts.count == 2 { out[String(parts[0])] = String(parts[1]) }
    }
    return out
  }

  public static func submissions(_ root: String) -> [Submission] {
    guard let data = FileManager.default.contents(atPath: RunFile.jobs.path(in: folder(root))) else { return [] }
    return (try? JSONDecoder().decode([Submission].self, from: data)) ?? []
  }

  /// Phase id -> `JOB_TASK` of its latest submission.
  static func taskOfPhase(_ subs: [Submission]) -> [String: String] {
    var out: [String: String] = [:]
    for s in subs { for (i, p) in s.phases.enumerated() { out[p] = "\(s.jobID)_\(i)" } }
    return out
  }

  /// Warns (one line on stderr) when the run folder is on a node-local temporary file
  /// system that compute nodes cannot see.
  public static func warnIfNodeLocal(_ root: String, warn: (String) -> Void) {
    let real = URL(fileURLWithPath: root).resolvingSymlinksInPath().path
    var local = ["/tmp", "/var/tmp", "/dev/shm", "/run"]
    if let t = ProcessInfo.processInfo.environment["TMPDIR"], !t.isEmpty { local.append(t) }
    if let hit = local.first(where: { real == $0 || real.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }) {
      warn(
        "warning: \(real) is under \(hit), usually node-local: other nodes will not see its results; use a shared file system"
      )
    }
  }

  /// Throws the one-line error for a machine without Slurm's `sbatch` (checked before
  /// anything is written or warned about).
  public static func requireSbatch() throws {
    guard which("sbatch") != nil else {
      throw GraphError(
        "sbatch is not on PATH: install Slurm's client commands (Debian: slurm-client), or run on this machine with lth run --jobs N"
      )
    }
  }

  /// Writes one script per wave and submits the waves in order; returns the new submissions.
  public static func submit(
    _ graph: JobGraph, root: String, lth: String, options o: Options, say: (String) -> Void
  ) throws -> [Submission] {
    try requireSbatch()
    let dir = folder(root)
    try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
    var subs = submissions(root)
    let queued = try queue()
    var running: [String: String] = [:]  // phase -> active JOB_TASK
    for (phase, task) in taskOfPhase(subs) where queued[task] != nil { running[phase] = task }
    // What is neither finished nor queued, in waves (queued phases count as coming).
    var g = graph
    for i in g.phases.indices where running[g.phases[i].id] != nil { g.phases[i].done = true }
    let waves = try g.waves()
    var taskOf = running
    let cwd = FileManager.default.currentDirectoryPath
    var new: [Submission] = []
    let stamp = ISO8601DateFormatter().string(from: Date())
    let first = (subs.map(\.wave).max() ?? -1) + 1
    for (k, wave) in waves.enumerated() {
      let w = first + k
      let script = "\(dir)/wave_\(w).sh"
      var text = """
        #!/bin/bash
        # LotteryKit: wave \(w) of `lth \(graph.command.joined(separator: " "))`, one array task per phase.
        # Written by lth submit --slurm; the phases skip what is finished, so rerunning is harmless.
        set -u
        cd \(shellQuote(cwd))
        case "${SLURM_ARRAY_TASK_ID:-0}" in

        """
      for (i, p) in wave.enumerated() {
        text +=
          "  \(i)) args=(\((p.arguments + ["--quiet"]).map(shellQuote).joined(separator: " "))) ;;  # \(p.id)\n"
      }
      text += """
          *) echo "no phase for task ${SLURM_ARRAY_TASK_ID}" >&2; exit 2 ;;
        esac
        # Preemption: Slurm sends TERM (--signal=B:TERM@120) to this shell; the phase is
        # stopped, the task is requeued, and the phase resumes from its last checkpoint
        # (resumes are bit-identical).
        \(shellQuote(lth)) "${args[@]}" --threads "${SLURM_CPUS_PER_TASK:-1}" &
        child=$!
        trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; exit 0' TERM
        wait "$child"

        """
      try Data(text.utf8).write(to: URL(fileURLWithPath: script), options: .atomic)
      chmod(script, 0o755)
      var args = [
        "--parsable", "--array=0-\(wave.count - 1)", "--job-name=lth-\(wave[0].kind)",
        "--cpus-per-task=\(o.cpusPerTask)", "--requeue", "--signal=B:TERM@120",
        "--output=\(dir)/logs/%A_%a.out", "--open-mode=append",
      ]
      if let p = o.partition { args.append("--partition=\(p)") }
      if let t = o.time { args.append("--time=\(t)") }
      if let m = o.mem { args.append("--mem=\(m)") }
      if let a = o.account { args.append("--account=\(a)") }
      var needs: [String] = []
      for p in wave {
        for d in p.dependencies { if let t = taskOf[d], !needs.contains(t) { needs.append(t) } }
      }
      if !needs.isEmpty { args.append("--dependency=afterok:" + needs.joined(separator: ":")) }
      args += o.extra
      args.append(script)
      let r = try run("sbatch", args)
      guard r.status == 0,
        let id = r.out.split(separator: "\n").first.map({ String($0.split(separator: ";")[0]) }),
        !id.isEmpty
      else {
        let why = r.err.split(separator: "\n").map(String.init).first { !$0.isEmpty } ?? "status \(r.status)"
        try record(subs + new, root: root)
        throw GraphError("sbatch refused wave \(w) (\(wave.count) phases): \(why)")
      }
      for (i, p) in wave.enumerated() { taskOf[p.id] = "\(id)_\(i)" }
      new.append(Submission(jobID: id, wave: w, phases: wave.map(\.id), script: script, submitted: stamp))
      say(
        "job \(id): wave \(w), \(wave.count) phase\(wave.count == 1 ? "" : "s")\(needs.isEmpty ? "" : " after \(needs.count) task\(needs.count == 1 ? "" : "s")")"
      )
    }
    subs += new
    try record(subs, root: root)
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .prettyPrinted]
    try enc.encode(graph).write(to: URL(fileURLWithPath: RunFile.graph.path(in: dir)), options: .atomic)
    return new
  }

  static func record(_ subs: [Submission], root: String) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .prettyPrinted]
    try enc.encode(subs).write(to: URL(fileURLWithPath: RunFile.jobs.path(in: folder(root))), options: .atomic)
  }

  /// Every phase of the last submitted graph with its state: done, running, pending, failed
  /// (submitted, not queued, no result: cancelled, failed, or its dependency failed) or
  /// missing (never submitted).
  public static func status(_ root: String, queue q: [String: String]? = nil) throws -> [(
    Phase, String, String?
  )] {
    guard let data = FileManager.default.contents(atPath: RunFile.graph.path(in: folder(root))),
      let graph = try? JSONDecoder().decode(JobGraph.self, from: data)
    else {
      throw GraphError("\(root) has no Slurm submission (slurm/\(RunFile.graph.rawValue)); submit with lth submit --slurm")
    }
    let queued = try q ?? queue()
    let tasks = taskOfPhase(submissions(root))
    return graph.phases.map { p0 in
      var p = p0
      p.done = FileManager.default.fileExists(atPath: p.marker)
      let task = tasks[p.id]
      if p.done { return (p, "done", task) }
      guard let task else { return (p, "missing", nil) }
      switch queued[task] {
      case nil: return (p, "failed", task)
      case "RUNNING", "COMPLETING", "CONFIGURING": return (p, "running", task)
      default: return (p, "pending", task)
      }
    }
  }

  static func shellQuote(_ s: String) -> String {
    let safe = CharacterSet(
      charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
    if !s.isEmpty && s.unicodeScalars.allSatisfy({ safe.contains($0) }) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
  }
}
