import Analysis
import ArgumentParser
import Cluster
import Engine
import Experiments
import Foundation
import Training

/// An experiment command that can be planned as a graph of phases (``Cluster/JobGraph``):
/// each phase is the same command restricted to it.
protocol Plannable {
  /// The experiment folder and its phases.
  func phases(arguments: [String]) throws -> (root: String, phases: [Phase])
  /// What must exist before any phase runs (lth run and lth submit call it; lth plan does
  /// not, and changes nothing).
  func prepare() throws
}

extension Plannable {
  func prepare() throws {}
}

/// Options a phase sets itself, removed from the user's command before restricting it.
let phaseOptions = ["--replicates", "--replicate", "--levels", "--threads", "--densities", "--spawn-steps"]
let phaseFlags = ["--json", "--quiet"]

/// A library plan's phases as Cluster phases: each phase's command is `base(phase)`
/// restricted to its replicate and level, density or spawn step.
func clusterPhases(_ plan: any ExperimentPlan, base: (ExperimentPhase) -> [String]) -> [Phase] {
  plan.phases().map { p in
    let restrict: [String]
    switch p.scope {
    case .level(let l): restrict = ["--replicate", "\(p.replicate)", "--levels", "\(l)"]
    case .density(let d): restrict = ["--replicate", "\(p.replicate)", "--densities", "\(d)"]
    case .spawn(let k, _): restrict = ["--replicate", "\(p.replicate)", "--spawn-steps", "\(k)"]
    }
    return Phase(
      id: p.id, kind: p.kind, arguments: base(p) + restrict, dependencies: p.dependencies, marker: p.marker)
  }
}

extension Lottery: Plannable {
  func plan() throws -> LotteryPlan {
    LotteryPlan(
      try lottery.resolve(try training.resolve()), output: training.output,
      replicates: try lottery.replicateList(),
      levels: levels)
  }

  func phases(arguments: [String]) throws -> (root: String, phases: [Phase]) {
    let plan = try plan()
    let base = Arguments.removing(phaseOptions, flags: phaseFlags, from: arguments)
    return (plan.root, clusterPhases(plan) { _ in base })
  }
}

extension PruneInit: Plannable {
  func plan() throws -> PaIPlan {
    PaIPlan(
      try pai.resolve(try training.resolve(), lottery), output: training.output,
      replicates: try lottery.replicateList(), densities: try pai.densityList())
  }

  func phases(arguments: [String]) throws -> (root: String, phases: [Phase]) {
    let plan = try plan()
    let base = Arguments.removing(phaseOptions, flags: phaseFlags, from: arguments)
    return (plan.root, clusterPhases(plan) { _ in base })
  }
}

extension LMC: Plannable {
  /// Checked against the data and the mask run (``prepare()``) when the mask run's level is
  /// there; a subnetwork whose lottery is still to run (a phase of the same graph, e.g. in
  /// `lth reproduce`) is planned from its hyperparameters alone and checked when it runs.
  func phases(arguments: [String]) throws -> (root: String, phases: [Phase]) {
    let plan: LMCPlan
    let maskReady = try maskFrom.map { dir in
      try replicateList().allSatisfy { r in
        FileManager.default.fileExists(
          atPath: RunFile.summary.path(
            in: RunLayout.main(RunLayout.level(dir, replicate: r, level: level ?? 0))))
      }
    }
    if maskReady ?? true {
      let (runner, ks, reps) = try prepare()
      plan = LMCPlan(
        runner.hparams, output: training.output, replicates: reps, spawnSteps: ks, copies: copies)
    } else {
      let h = try hparams()
      let ks = try spawnIterations { try RunSetup(h.training, dataDir: training.dataDir).iterationsPerEpoch }
      plan = LMCPlan(
        h, output: training.output, replicates: try replicateList(), spawnSteps: ks, copies: copies)
    }
    let base = Arguments.removing(phaseOptions, flags: phaseFlags, from: arguments)
    return (plan.root, clusterPhases(plan) { _ in base })
  }
}

/// Branch-only options, removed when a branch command is turned into its source's command.
let branchOptions = [
  "--layout", "--retrain-dataset", "--retrain-lr", "--retrain-training-steps", "--retrain-batch-size",
  "--retrain-optimizer", "--retrain-weight-decay",
]

extension BranchCommon {
  /// The source experiment's phases (the lottery levels or prune-init densities the
  /// branch needs, from the same flags) and one branch phase per (replicate, level or
  /// density), each after its source phase: one graph runs both.
  func phases(_ b: BranchHParams, arguments: [String]) throws -> (root: String, phases: [Phase]) {
    let source = Arguments.removing(
      phaseOptions + branchOptions, flags: phaseFlags, from: Array(arguments.dropFirst(2)))
    let branchBase = Arguments.removing(phaseOptions, flags: phaseFlags, from: arguments)
    let reps = try lottery.replicateList()
    let plan: BranchPlan
    let sourceCommand: String
    if pai.method != nil || pai.densities != nil {
      let p = PaIPlan(
        try pai.resolve(try training.resolve(), lottery), output: training.output, replicates: reps,
        densities: try pai.densityList())
      (plan, sourceCommand) = (BranchPlan(pai: p, branch: b), "prune-init")
    } else {
      guard let levels else {
        throw EngineError(
          "--levels (a lottery run) or --method and --densities (a prune-init run) is required")
      }
      let h = try lottery.resolve(try training.resolve())
      plan = BranchPlan(
        lottery: h, output: training.output, replicates: reps, levels: try parseLevels(levels),
        branch: h.branch(b))
      sourceCommand = "lottery"
    }
    return (plan.root, clusterPhases(plan) { $0.branch == nil ? [sourceCommand] + source : branchBase })
  }
}

/// A `lth branch KIND` subcommand: its flags and the branch it describes. Every one is
/// planned the same way (``BranchCommon/phases(_:arguments:)``).
protocol BranchSubcommand: Plannable {
  var common: BranchCommon { get }
  func branch() throws -> BranchHParams
}

extension BranchSubcommand {
  func phases(arguments: [String]) throws -> (root: String, phases: [Phase]) {
    try common.phases(try branch(), arguments: arguments)
  }
}

extension Branch.Shuffle: BranchSubcommand {}
extension Branch.Reinit: BranchSubcommand {}
extension Branch.Invert: BranchSubcommand {}
extension Branch.RandomPrune: BranchSubcommand {}
extension Branch.RandomReinit: BranchSubcommand {}
extension Branch.Retrain: BranchSubcommand {}

/// Parses an experiment command line and plans it.
func planGraph(_ command: [String]) throws -> JobGraph { try plannedCommand(command).graph }

func plannedCommand(_ command: [String]) throws -> (graph: JobGraph, command: Plannable) {
  guard let name = command.first else {
    throw EngineError("give an experiment command, e.g. lth plan lottery ...")
  }
  let parsed: ParsableCommand
  do { parsed = try LTH.parseAsRoot(command) } catch {
    let first = LTH.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
    throw EngineError(first.replacingOccurrences(of: "Error: ", with: ""))
  }
  guard let plannable = parsed as? Plannable else {
    throw EngineError(
      "'\(name)' is not an experiment command that can be planned; use lottery, branch, prune-init, lmc, scaling sweep or reproduce"
    )
  }
  let (root, phases) = try plannable.phases(arguments: command)
  return (try JobGraph(command: command, root: root, phases: phases), plannable)
}

struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Print the graph of phases an experiment command runs (what is done, what depends on what).",
    discussion: """
      Every phase is the same lth command restricted to it (--replicate R --levels L for a \
      lottery level, --replicate R --densities D for prune-init, --replicate R --spawn-steps K \
      for lmc). A lottery level depends on the level before it; prune-init densities and lmc \
      spawn steps are independent.
      """)
  @Flag(help: "Print one JSON object.") var json = false
  @Argument(
    parsing: .captureForPassthrough, help: "The experiment command, e.g. lottery --model ... --levels 3.")
  var command: [String] = []

  func run() throws {
    runOrFail {
      let graph = try planGraph(command)
      print(json ? jsonLine(graph.listing) : graph.text())
    }
  }
}

struct RunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run an experiment command's phases on this machine, N at a time.",
    discussion: """
      Plans the command (see lth plan) and runs its unfinished phases as lth child processes, \
      --jobs at a time, each as soon as the phases it needs have finished, with --threads \
      split between them. Results are those of the command run on its own, bit for bit. \
      Re-running resumes.
      """)
  @Option(help: "Phases run at the same time.") var jobs = 1
  @Option(help: "Worker threads in all (each job gets threads/jobs, at least 1).") var threads =
    MachineInfo.defaultThreads
  @Flag(help: "No progress output.") var quiet = false
  @Argument(
    parsing: .captureForPassthrough, help: "The experiment command, e.g. lottery --model ... --levels 3.")
  var command: [String] = []

  func run() throws {
    runOrFail {
      guard jobs >= 1 else { throw EngineError("--jobs must be at least 1, got \(jobs)") }
      guard threads >= 1 else { throw EngineError("--threads must be at least 1, got \(threads)") }
      let (graph, planned) = try plannedCommand(command)
      try planned.prepare()
      let perJob = max(1, threads / jobs)
      if !quiet {
        say(
          "\(graph.phases.count) phases, \(graph.pending.count) to run, \(jobs) at a time x \(perJob) thread\(perJob == 1 ? "" : "s")"
        )
      }
      let failures = try LocalExecutor.run(
        graph, .init(jobs: jobs, threads: perJob, passThrough: jobs == 1, quiet: quiet), say: say)
      if let first = failures.first {
        throw EngineError("\(failures.count) of \(graph.pending.count) phases failed; first: \(first)")
      }
      // The command itself, now with nothing left to do, prints its results.
      let final = try LTH.parseAsRoot(
        Arguments.removing(["--threads"], flags: ["--quiet"], from: command) + [
          "--threads", "\(threads)", "--quiet",
        ])
      var c = final
      try c.run()
    }
  }
}

struct SubmitCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "submit",
    abstract: "Submit an experiment command's unfinished phases to Slurm: one job array per wave.",
    discussion: """
      Writes one sbatch script per wave into RUN_DIR/slurm/ and submits them as job arrays, \
      each after the array tasks its phases need (--dependency=afterok:JOB_TASK...); prints \
      the job ids and records them (slurm/\(RunFile.jobs.rawValue)). Tasks are requeued when preempted \
      (--requeue, --signal=B:TERM@120) and resume from their checkpoints. Re-running submits \
      only what is neither finished nor still queued. See lth status.
      """)
  @Flag(help: "Submit to Slurm (the only scheduler so far).") var slurm = false
  @Option(help: "Partition.") var partition: String?
  @Option(help: "Time limit per task, e.g. 2:00:00.") var time: String?
  @Option(help: "CPUs per task (the phase's --threads).") var cpusPerTask = 1
  @Option(help: "Memory per task, e.g. 4G.") var mem: String?
  @Option(help: "Account.") var account: String?
  @Option(help: "Another sbatch option, verbatim (repeatable).") var sbatchArg: [String] = []
  @Argument(
    parsing: .captureForPassthrough, help: "The experiment command, e.g. lottery --model ... --levels 3.")
  var command: [String] = []

  func run() throws {
    runOrFail {
      guard slurm else { throw EngineError("give --slurm (or run on this machine with lth run --jobs N)") }
      guard cpusPerTask >= 1 else {
        throw EngineError("--cpus-per-task must be at least 1, got \(cpusPerTask)")
      }
      let (graph, planned) = try plannedCommand(command)
      try Slurm.requireSbatch()
      try FileManager.default.createDirectory(atPath: graph.root, withIntermediateDirectories: true)
      try planned.prepare()
      Slurm.warnIfNodeLocal(graph.root) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
      let subs = try Slurm.submit(
        graph, root: graph.root, lth: LocalExecutor.lth,
        options: .init(
          partition: partition, time: time, cpusPerTask: cpusPerTask, mem: mem, account: account,
          extra: sbatchArg),
        say: say)
      say(
        subs.isEmpty
          ? "nothing to submit: every phase is finished or queued"
          : "submitted \(subs.count) job array\(subs.count == 1 ? "" : "s")")
      say("run: \(graph.root)")
    }
  }
}

struct StatusCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "Every phase of a submitted experiment: done, running, pending, failed or missing.",
    discussion:
      "Reads the run folder (results and slurm/\(RunFile.jobs.rawValue)) and squeue; needs no accounting database."
  )
  @Argument(help: "The experiment folder (lottery_<hash>, pai_<hash>, lmc_<hash>).") var runDir: String
  @Flag(help: "Print one JSON object.") var json = false

  func run() throws {
    runOrFail {
      let rows = try Slurm.status(runDir)
      if json {
        print(
          jsonLine(
            SlurmStatus(runDir: runDir, phases: rows.map { .init(id: $0.0.id, state: $0.1, task: $0.2) })))
        return
      }
      var counts: [String: Int] = [:]
      for (_, s, _) in rows { counts[s, default: 0] += 1 }
      print(
        ["done", "running", "pending", "failed", "missing"].compactMap { k in counts[k].map { "\($0) \(k)" } }
          .joined(separator: ", "))
      for (p, s, t) in rows {
        print(
          "\(s.padding(toLength: 8, withPad: " ", startingAt: 0)) \(p.id)\(t.map { "  job \($0)" } ?? "")")
      }
    }
  }
}

/// `lth status --json`: each phase's Slurm state and its task (null before submission).
struct SlurmStatus: Codable {
  struct Phase: Codable {
    var id: String
    var state: String
    var task: String?
    func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(id, forKey: .id)
      try c.encode(state, forKey: .state)
      try c.encode(task, forKey: .task)
    }
  }
  var runDir: String
  var phases: [Phase]
  var schemaVersion = ResultSchema.version
  enum CodingKeys: String, CodingKey {
    case phases
    case runDir = "run_dir"
    case schemaVersion = "schema_version"
  }
}
