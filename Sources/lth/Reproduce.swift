import Analysis
import ArgumentParser
import Cluster
import Datasets
import Engine
import Experiments
import Families
import Foundation
import NN
import Training

extension ReproductionScale: ExpressibleByArgument {}

struct Reproduce: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a paper's experiments and check each finding it states: lth, renda, lmc, pai or scaling.",
    discussion: """
      Runs the paper's experiments (each an lth lottery, branch, prune-init, lmc or scaling sweep \
      command, as phases, --jobs at a time), then checks every claim of the paper on this run's \
      numbers: the paper's value, LotteryKit's stored reference (default data set only; its \
      date, machine and command in the JSON), this run's value, and a verdict (holds, differs, \
      too few replicates, or moved to full) from every replicate, with the tolerance stated per \
      claim. --scale quick finishes each paper in at most 15 minutes on 2 cores with the small \
      model and recipe named per paper; --scale full uses the papers' recipes and prints its \
      estimated time first. Writes <output>/reproduce_<hash>/\(RunFile.findings.rawValue); re-running resumes, \
      and lth plan, lth run --jobs N and lth submit --slurm take the command like any other.
      """)
  @Argument(help: ArgumentHelp("The paper.", valueName: Papers.ids.joined(separator: "|"))) var paper: String
  @Option(help: "quick (minutes, small models) or full (the papers' recipes).") var scale = ReproductionScale
    .quick
  @Option(help: "Data set for every experiment (default: each model's, Fashion-MNIST for LeNet).")
  var dataset: String?
  @Option(help: "Folder with the data set's files.") var dataDir: String?
  @Option(help: "Output root.") var output = "./lth_runs"
  @Option(help: "Replicates per experiment (default: the paper's at this scale; quick runs 2 or 3).")
  var replicates: Int?
  @Option(help: "Phases run at the same time, in separate processes.") var jobs = max(
    1, MachineInfo.defaultThreads)
  @Option(help: "Worker threads in all (each job gets threads/jobs, at least 1).") var threads =
    MachineInfo.defaultThreads
  @Option(help: "Slurm nodes the --scale full estimate is given for.") var nodes = 16
  @Flag(help: "Start a run estimated to take over an hour on this machine.") var yes = false
  @Flag(help: "Print the findings as one JSON object.") var json = false
  @Flag(help: "Print the findings as a Markdown table (docs/reproduce.md is made of these).") var markdown =
    false
  @Flag(
    help:
      "Print this run's values as stored-reference entries (for Sources/Analysis/Reproduce/References.swift)."
  )
  var swiftReferences = false
  @Flag(help: "No progress output.") var quiet = false

  /// The paper, its settings and the planned graph of all its experiments.
  struct Planned {
    var paper: any PaperReproduction
    var settings: ReproductionSettings
    var root: String
    var graph: JobGraph
    var runs: ReproductionRuns
    var commands: [any Plannable]
  }

  func settings() throws -> ReproductionSettings {
    if let r = replicates, r < 1 { throw EngineError("--replicates must be at least 1, got \(r)") }
    if scale == .quick, let r = replicates, r < 2 {
      throw EngineError("--scale quick runs at least 2 replicates (a verdict needs a standard deviation)")
    }
    // The size of the training split (it sizes the validation split): LeNet's data set, or --dataset.
    var o = TrainingOverrides()
    o.dataset = dataset
    let h = try TrainingHParams.resolve(model: "mnist_lenet_300_100", o)
    let train = try RunSetup(h, dataDir: dataDir).train.count
    return ReproductionSettings(
      scale: scale, dataset: dataset == "fashion_mnist" ? nil : dataset, trainSize: train,
      replicates: replicates)
  }

  func plan() throws -> Planned {
    let p = try Papers.named(paper)
    let s = try settings()
    let experiments = try p.experiments(s)
    let identity =
      ([p.id, s.scale.rawValue, s.dataset ?? "-", "\(s.replicates ?? 0)"]
      + experiments.map { e in
        e.name + " " + e.arguments.joined(separator: " ")
      }).joined(separator: "\n")
    let root = RunLayout.root(.reproduce, output: output, hash: RunHash.short(identity))
    var runs: ReproductionRuns = [:]
    var phases: [Phase] = []
    var commands: [any Plannable] = []
    var byMarker: [String: String] = [:]  // marker -> the phase id that owns it
    var rename: [String: String] = [:]  // prefixed id -> kept id
    for e in experiments {
      let args =
        e.arguments.map { a in a.hasPrefix("@") ? (runs[String(a.dropFirst())] ?? a) : a } + [
          "--output", output,
        ]
        + (dataDir.map { ["--data-dir", $0] } ?? [])
      let (graph, command) = try plannedCommand(args)
      runs[e.name] = graph.root
      commands.append(command)
      for var ph in graph.phases {
        let id = e.name + "." + ph.id
        // Two experiments that need the same phase (a branch and its lottery) run it once.
        if let owner = byMarker[ph.marker] {
          rename[id] = owner
          continue
        }
        byMarker[ph.marker] = id
        rename[id] = id
        ph.id = id
        ph.dependencies =
          ph.dependencies.map { rename[e.name + "." + $0] ?? e.name + "." + $0 }
          + e.needs.map { rename[$0] ?? $0 }
        phases.append(ph)
      }
    }
    let graph = try JobGraph(
      command: ["reproduce", paper, "--scale", scale.rawValue], root: root, phases: phases)
    return Planned(paper: p, settings: s, root: root, graph: graph, runs: runs, commands: commands)
  }

  func run() throws {
    runOrFail {
      guard jobs >= 1 else { throw EngineError("--jobs must be at least 1, got \(jobs)") }
      guard threads >= 1 else { throw EngineError("--threads must be at least 1, got \(threads)") }
      guard nodes >= 1 else { throw EngineError("--nodes must be at least 1, got \(nodes)") }
      let started = Date()
      let plan = try plan()
      let graph = plan.graph
      let perJob = max(1, threads / jobs)
      if scale == .full && !graph.pending.isEmpty {
        let e = try estimate(graph, settings: plan.settings)
        say(
          "estimated: \(hours(e.total)) on this machine (\(jobs) job\(jobs == 1 ? "" : "s")), \(hours(e.onNodes)) on \(nodes) Slurm nodes (\(graph.pending.count) phases; dense training steps timed here)"
        )
        if e.total / Double(jobs) > 3600 && !yes {
          throw EngineError(
            "this run is estimated at over an hour here; give --yes to start it, or submit it: lth submit --slurm reproduce \(paper) --scale full"
          )
        }
      }
      try FileManager.default.createDirectory(atPath: plan.root, withIntermediateDirectories: true)
      for c in plan.commands { try c.prepare() }
      if !graph.pending.isEmpty {
        if !quiet {
          say(
            "\(plan.paper.title), \(scale.rawValue): \(graph.phases.count) phases, \(graph.pending.count) to run, \(jobs) at a time x \(perJob) thread\(perJob == 1 ? "" : "s")"
          )
        }
        let failures = try LocalExecutor.run(
          graph, .init(jobs: jobs, threads: perJob, passThrough: false, quiet: quiet), say: say)
        if let first = failures.first {
          throw EngineError("\(failures.count) of \(graph.pending.count) phases failed; first: \(first)")
        }
      }
      // The wall clock of the invocation that ran the phases survives a rerun that ran none.
      let findingsPath = RunFile.findings.path(in: plan.root)
      let previous =
        graph.pending.isEmpty
        ? (try? AtomicFile.read(findingsPath)).flatMap {
          try? JSONDecoder().decode(ReproductionResult.self, from: Data($0))
        }
        : nil
      var findings = try plan.paper.findings(plan.runs, plan.settings)
      for i in findings.indices {
        findings[i].referenceValue = Papers.reference(
          findings[i].id, scale: scale, dataset: plan.settings.dataset)
      }
      var result = ReproductionResult(
        paper: plan.paper, settings: plan.settings, findings: findings, runDirs: plan.runs,
        seconds: previous?.seconds ?? Date().timeIntervalSince(started),
        trainingSeconds: trainingSeconds(Array(plan.runs.values)),
        provenance: try? JSONValue(encoding: Provenance.current()))
      result.runDir = plan.root
      try RunStore.writeJSON(result, to: findingsPath)
      if swiftReferences {
        print(references(result))
      } else if markdown {
        print(result.markdown(quickRecipe: plan.paper.quickRecipe))
      } else if json {
        print(jsonLine(result))
      } else {
        print(result.table())
        let counts = Dictionary(grouping: findings, by: \.verdict).mapValues(\.count)
        print(
          [Finding.Verdict.holds, .differs, .tooFewReplicates, .movedToFull].compactMap { v in
            counts[v].map { "\($0) \(v.rawValue)" }
          }.joined(separator: ", "))
        print("findings: \(RunFile.findings.path(in: plan.root))")
      }
    }
  }

  /// Seconds of training recorded in the runs' summaries.
  func trainingSeconds(_ roots: [String]) -> Double {
    var total = 0.0
    var seen = Set<String>()
    for root in roots where seen.insert(root).inserted {
      guard let e = FileManager.default.enumerator(atPath: root) else { continue }
      while let f = e.nextObject() as? String {
        guard f.hasSuffix("/" + RunFile.summary.rawValue) else { continue }
        if let s = try? TrainSummary.read(in: root + "/" + (f as NSString).deletingLastPathComponent) {
          total += s.seconds
        }
      }
    }
    return total
  }

  /// This run's values as `References.swift` entries.
  func references(_ r: ReproductionResult) -> String {
    let date = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
    let machine = "\(MachineInfo.cpuModel), \(ProcessInfo.processInfo.activeProcessorCount) cores"
    let command = "lth reproduce \(r.paper) --scale \(r.scale.rawValue)"
    return r.findings.map { f in
      let v = f.lotterykitValue.map { String($0) } ?? "nil"
      return
        "    \"\(r.scale.rawValue)/\(f.id)\": StoredReference(value: \(v), verdict: .\(f.verdict.caseName), date: \"\(date)\", machine: \"\(machine)\", command: \"\(command)\"),"
    }.joined(separator: "\n")
  }

  func hours(_ s: Double) -> String {
    s < 3600
      ? String(format: "%.0f min", s / 60)
      : s < 86400 * 2 ? String(format: "%.1f h", s / 3600) : String(format: "%.1f days", s / 86400)
  }

  /// The run's cost from one timed dense training step per (model, batch size): every
  /// pending phase trains its run's steps (an LMC spawn step: its children, about 2.5
  /// runs); on N nodes, the longer of the critical path and the total over N.
  func estimate(_ graph: JobGraph, settings: ReproductionSettings) throws -> (total: Double, onNodes: Double)
  {
    var stepCost: [String: Double] = [:]
    var cost: [String: Double] = [:]
    for ph in graph.pending {
      let parsed = try LTH.parseAsRoot(ph.arguments)
      guard let t = (parsed as? TrainingConfigured)?.trainingFlags else { continue }
      let h = try t.resolve()
      let key = "\(h.model)/\(h.batchSize)"
      if stepCost[key] == nil { stepCost[key] = try timeStep(model: h.model, batch: h.batchSize) }
      let examples = Int(Double(settings.trainSize) * h.subsampleFraction) - h.validationSize
      let perEpoch = max(1, (examples + h.batchSize - 1) / h.batchSize)
      let steps = try StepSpec(parsing: h.trainingSteps).iterations(perEpoch: perEpoch)
      cost[ph.id] = Double(steps) * stepCost[key]! * (ph.kind == "spawn" ? 2.5 : 1.1)
    }
    let total = cost.values.reduce(0, +)
    var finish: [String: Double] = [:]
    for ph in graph.phases {  // dependencies come first
      finish[ph.id] = (ph.dependencies.compactMap { finish[$0] }.max() ?? 0) + (cost[ph.id] ?? 0)
    }
    return (total, max(finish.values.max() ?? 0, total / Double(nodes)))
  }

  /// Seconds of one dense training step of `model` at `batch` (``medianMs(_:_:)``: 5 after warm-up).
  func timeStep(model: String, batch: Int) throws -> Double {
    Parallel.threads = max(1, threads / jobs)
    let net: Network<Float> = try ModelZoo.make(model)
    net.initialize(seed: 0, weights: .kaimingNormal)
    let data = Synthetic.make(count: batch, shape: net.inputShape, classes: net.classes)
    let x = Tensor<Float>(zeros: [0])
    let labels = data.gather(0..<batch, into: x, featureMajor: net.prefersFeatureMajorInput(batch: batch))
    let opt = try makeBenchOptimizer(net)
    try net.lossAndGradients(input: x, labels: labels, denseGradients: false)  // a second warm-up step
    return try medianMs(5) {
      try net.lossAndGradients(input: x, labels: labels, denseGradients: false)
      opt.step()
    } / 1000
  }
}

/// A command whose phases train with these flags (for `lth reproduce`'s estimate).
protocol TrainingConfigured {
  var trainingFlags: TrainingFlags { get }
}
extension Lottery: TrainingConfigured { var trainingFlags: TrainingFlags { training } }
extension PruneInit: TrainingConfigured { var trainingFlags: TrainingFlags { training } }
extension LMC: TrainingConfigured { var trainingFlags: TrainingFlags { training } }
extension Branch.Shuffle: TrainingConfigured { var trainingFlags: TrainingFlags { common.training } }
extension Branch.Reinit: TrainingConfigured { var trainingFlags: TrainingFlags { common.training } }
extension Branch.Invert: TrainingConfigured { var trainingFlags: TrainingFlags { common.training } }
extension Branch.RandomPrune: TrainingConfigured { var trainingFlags: TrainingFlags { common.training } }
extension Branch.RandomReinit: TrainingConfigured { var trainingFlags: TrainingFlags { common.training } }

extension Reproduce: Plannable {
  func phases(arguments: [String]) throws -> (root: String, phases: [Phase]) {
    let p = try plan()
    return (p.root, p.graph.phases)
  }

  func prepare() throws {
    let p = try plan()
    try FileManager.default.createDirectory(atPath: p.root, withIntermediateDirectories: true)
    for c in p.commands { try c.prepare() }
  }
}
