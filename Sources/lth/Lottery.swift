import Analysis
import ArgumentParser
import Datasets
import Engine
import Experiments
import Families
import Foundation
import NN
import Pruning
import Reports
import Training

/// Flags that define a lottery experiment besides training (shared by `lottery` and `branch`).
struct LotteryFlags: ParsableArguments {
  typealias L = LotteryHParams.CodingKeys
  typealias P = LotteryHParams.PruningKey
  @Option(name: .key(RunSettingKey.replicates), help: .key(RunSettingKey.replicates)) var replicates: Int?
  @Option(name: .key(RunSettingKey.replicate), help: .key(RunSettingKey.replicate)) var replicate: Int?
  @Option(name: .key(L.rewindStep), help: .key(L.rewindStep)) var rewindStep: String?
  @Option(name: .key(L.retrain), help: .key(L.retrain)) var retrain: RetrainMode?
  @Option(name: .key(L.finetuneSteps), help: .key(L.finetuneSteps)) var finetuneSteps: String?
  @Option(name: .key(P.strategy), help: .key(P.strategy)) var pruningStrategy: PruningPolicy.Strategy?
  @Option(name: .key(P.fraction), help: .key(P.fraction)) var pruningFraction: Double?
  @Option(name: .key(P.convFraction), help: .key(P.convFraction)) var pruningFractionConv: Double?
  @Option(name: .key(P.outputFraction), help: .key(P.outputFraction)) var pruningFractionOutput: Double?
  @Option(name: .key(P.ignore), help: .key(P.ignore)) var pruneIgnore: String?

  var overrides: LotteryOverrides {
    var o = LotteryOverrides()
    o.pruningStrategy = pruningStrategy
    o.pruningFraction = pruningFraction
    o.pruningFractionConv = pruningFractionConv
    o.pruningFractionOutput = pruningFractionOutput
    o.pruneIgnore = pruneIgnore?.split(separator: ",").map(String.init)
    o.retrain = retrain ?? .weightRewind
    o.rewindStep = rewindStep
    o.finetuneSteps = finetuneSteps
    return o
  }

  func resolve(_ training: TrainingHParams) throws -> LotteryHParams {
    try LotteryHParams.resolve(training, overrides)
  }

  func replicateList() throws -> [Int] {
    if let k = replicate {
      guard replicates == nil else { throw EngineError("give either --replicates or --replicate") }
      guard k >= 1 else {
        throw EngineError("--replicate must be at least 1 (replicates are numbered from 1)")
      }
      return [k]
    }
    let n = replicates ?? 1
    guard n >= 1 else { throw EngineError("--replicates must be at least 1, got \(n)") }
    return Array(1...n)
  }
}

struct Lottery: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Iterative magnitude pruning with rewinding: levels 0...N, resumable.",
    discussion: """
      Level 0 trains the dense network (saving the weights at --rewind-step); level L prunes \
      level L-1's final weights and retrains with a fresh optimizer. Results go to \
      <output>/lottery_<hash>/replicate_R/level_L/main/. Re-running the same command skips \
      every finished phase.
      """)
  @OptionGroup var training: TrainingFlags
  @OptionGroup var lottery: LotteryFlags
  @Option(help: "Pruning levels after the dense level 0.") var levels: Int

  func run() throws {
    runOrFail {
      try training.applyThreads()
      guard levels >= 0 else { throw EngineError("--levels must be non-negative, got \(levels)") }
      let h = try lottery.resolve(try training.resolve())
      let replicates = try lottery.replicateList()
      let runner = try LotteryRunner(
        h, dataDir: training.dataDir, output: training.output, progress: training.progress)
      try runner.validatePlan(levels: levels)
      let record = try RunStore.begin(runner, command: "lottery", requireSameCPU: training.requireSameCPU) {
        runner.hasUnfinishedLevels(replicates: replicates, levels: levels)
      }
      try CommandRecord.perform(record) {
        for r in replicates { try runner.runReplicate(r, levels: levels) }
      }
      try printResults(runner.root, json: training.json)
    }
  }
}

/// The results table of a lottery or prune-init run (or, with `json`, its JSON line last).
func printResults(_ root: String, json: Bool) throws {
  let results = try Results.collect(root)
  if !json { print(Results.table(results)) }
  print(json ? jsonLine(results) : "results: \(root)")
}

/// The flags every branch shares: how to find the source run (a lottery run with
/// `--levels`, or a `prune-init` run with `--method` and `--densities`), and where to branch.
struct BranchCommon: ParsableArguments {
  @OptionGroup var training: TrainingFlags
  @OptionGroup var lottery: LotteryFlags
  @OptionGroup var pai: PaIFlags
  @Option(help: "Lottery levels to branch off, e.g. 0-3,5,7.") var levels: String?

  func run(_ b: BranchHParams, retrain: TrainingHParams? = nil) throws {
    try training.applyThreads()
    if pai.method != nil || pai.densities != nil {
      guard levels == nil else {
        throw EngineError("give --levels (a lottery run) or --densities (a prune-init run), not both")
      }
      return try runPaI(b)
    }
    guard let levels else {
      throw EngineError("--levels (a lottery run) or --method and --densities (a prune-init run) is required")
    }
    let h = try lottery.resolve(try training.resolve())
    let b = h.branch(b)
    let levelList = try parseLevels(levels)
    let runner = try LotteryRunner(
      h, dataDir: training.dataDir, output: training.output, progress: training.progress)
    guard FileManager.default.fileExists(atPath: RunFile.hparams.path(in: runner.root)) else {
      throw RunError(
        "no lottery run for these flags at \(runner.root); run `lth lottery` with the same flags first")
    }
    let replicates = try lottery.replicateList()
    let record = try RunStore.begin(
      runner, command: "branch \(b.kind.rawValue)", requireSameCPU: training.requireSameCPU,
      alwaysCheckMachine: true
    ) {
      // Every branch level must exist before any branch trains: a plan that fails at its
      // last level must not throw away the branches trained before it.
      for r in replicates {
        for l in levelList { try runner.requireFinishedLevel(replicate: r, level: l) }
      }
      return runner.hasUnfinishedBranches(b, replicates: replicates, levels: levelList)
    }
    try CommandRecord.perform(record) {
      let rs = try retrain.map { try RunSetup($0, dataDir: training.dataDir) }
      for r in replicates {
        for l in levelList { try runner.runBranch(b, replicate: r, level: l, retrainSetup: rs) }
      }
    }
    try printResults(runner.root, json: training.json)
  }

  func runPaI(_ b: BranchHParams) throws {
    guard [.shuffle, .reinit, .invert].contains(b.kind) else {
      throw EngineError(
        "branch \(b.kind.rawValue) runs off lottery levels only (use shuffle, reinit or invert)")
    }
    let densities = try pai.densityList()
    let h = try pai.resolve(try training.resolve(), lottery)
    let runner = try PaIRunner(
      h, dataDir: training.dataDir, output: training.output, progress: training.progress,
      allowCollapse: pai.allowCollapse)
    guard FileManager.default.fileExists(atPath: RunFile.hparams.path(in: runner.root)) else {
      throw RunError(
        "no prune-init run for these flags at \(runner.root); run `lth prune-init` with the same flags first")
    }
    let replicates = try lottery.replicateList()
    let record = try RunStore.begin(
      runner, command: "branch \(b.kind.rawValue)", requireSameCPU: training.requireSameCPU,
      alwaysCheckMachine: true
    ) {
      for r in replicates { for d in densities { try runner.requireFinished(replicate: r, density: d) } }
      return runner.hasUnfinished(replicates: replicates, densities: densities, branch: b)
    }
    try CommandRecord.perform(record) {
      for r in replicates { for d in densities { try runner.runBranch(b, replicate: r, density: d) } }
    }
    try printResults(runner.root, json: training.json)
  }
}

struct Branch: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a branch off a finished lottery experiment (found from the same flags).",
    subcommands: [
      Shuffle.self, Reinit.self, Invert.self, RandomPrune.self, RandomReinit.self, Retrain.self,
    ])

  /// The three ablations of the PaI paper, for lottery and prune-init runs alike.
  struct Shuffle: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Ablation: kept positions redrawn within each tensor (per-tensor counts kept).")
    @OptionGroup var common: BranchCommon
    func branch() throws -> BranchHParams { BranchHParams(kind: .shuffle, layout: nil, training: nil) }
    func run() throws { runOrFail { try common.run(try branch()) } }
  }
  struct Reinit: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Ablation: the same mask with fresh initial weights.")
    @OptionGroup var common: BranchCommon
    func branch() throws -> BranchHParams { BranchHParams(kind: .reinit, layout: nil, training: nil) }
    func run() throws { runOrFail { try common.run(try branch()) } }
  }
  struct Invert: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Ablation: keep the lowest-scoring weights instead of the highest, at the same density.")
    @OptionGroup var common: BranchCommon
    func branch() throws -> BranchHParams { BranchHParams(kind: .invert, layout: nil, training: nil) }
    func run() throws { runOrFail { try common.run(try branch()) } }
  }

  struct RandomPrune: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "random-prune",
      abstract: "Random masks of the same density, retrained the way the main line retrains.")
    @OptionGroup var common: BranchCommon
    @Option(help: "layerwise (keep each tensor's count) or global (same total density).") var layout =
      "layerwise"
    func branch() throws -> BranchHParams {
      guard let l = PruningPolicy.Strategy(rawValue: layout) else {
        throw EngineError("--layout must be layerwise or global, got \(layout)")
      }
      return BranchHParams(kind: .randomPrune, layout: l, training: nil)
    }
    func run() throws { runOrFail { try common.run(try branch()) } }
  }

  struct RandomReinit: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "random-reinit", abstract: "The same mask with fresh initial weights.")
    @OptionGroup var common: BranchCommon
    func branch() throws -> BranchHParams { BranchHParams(kind: .randomReinit, layout: nil, training: nil) }
    func run() throws { runOrFail { try common.run(try branch()) } }
  }

  struct Retrain: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "The same mask and rewind weights, trained with other flags (prefixed --retrain-).")
    @OptionGroup var common: BranchCommon
    @Option(help: "Data set for retraining (same input shape and classes).") var retrainDataset: String?
    @Option(help: "Learning rate for retraining.") var retrainLr: Double?
    @Option(help: "Training length for retraining.") var retrainTrainingSteps: String?
    @Option(help: "Batch size for retraining.") var retrainBatchSize: Int?
    @Option(help: "Optimizer for retraining.") var retrainOptimizer: Recipe.OptimizerKind?
    @Option(help: "Weight decay for retraining.") var retrainWeightDecay: Double?
    func retrainHParams() throws -> TrainingHParams {
      var t = try common.training.resolve()
      if let v = retrainDataset {
        t.dataset = v
        t.augment = common.training.augment ?? DatasetCatalog.augmentsByDefault(v)
      }
      if let v = retrainLr { t.lr = v }
      if let v = retrainTrainingSteps { t.trainingSteps = v }
      if let v = retrainBatchSize { t.batchSize = v }
      if let v = retrainOptimizer { t.optimizer = v }
      if let v = retrainWeightDecay { t.weightDecay = v }
      try t.validate()
      return t
    }
    func branch() throws -> BranchHParams {
      BranchHParams(kind: .retrain, layout: nil, training: try retrainHParams())
    }
    func run() throws {
      runOrFail {
        let t = try retrainHParams()
        try common.run(BranchHParams(kind: .retrain, layout: nil, training: t), retrain: t)
      }
    }
  }
}

struct ResultsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "results",
    abstract:
      "Densities and accuracies of lottery, prune-init, lmc and scaling runs (mean ± std over replicates).",
    discussion: """
      With several runs, one table by density: methods in columns, their ablations beside them. \
      --json prints the result object (several runs: {"runs": [...]}) that `lth report` draws; \
      --csv prints tidy rows (run, replicate, level/target_density/k, pair, branch, metric, value).
      """)
  @Argument(help: "Run folders (lottery_<hash>, pai_<hash>, lmc_<hash>).") var runDirs: [String]
  @Flag(help: "Print one JSON object.") var json = false
  @Flag(help: "Print tidy CSV: one row per run, replicate, level or density or k, branch and metric.")
  var csv =
    false
  func run() throws {
    runOrFail {
      guard !runDirs.isEmpty else { throw EngineError("give at least one run folder") }
      guard !(json && csv) else { throw EngineError("give either --json or --csv") }
      let rs = try runDirs.map { try Report.collect($0) }
      if csv {
        guard !rs.contains(where: { $0.kind == "scaling" }) else {
          throw EngineError(
            "a scaling sweep has no tidy CSV of its own: give its point folders (SWEEP/lottery_*), or read SWEEP/\(RunFile.fit.rawValue)"
          )
        }
        print(TidyCSV.text(rs), terminator: "")
      } else if rs.count == 1 {
        let r = rs[0]
        switch (json, r) {
        case (true, _): print(jsonLine(r))
        case (false, .lmc(let l)): print(LMCResults.table(l))
        case (false, .scaling(let f)):
          if let e = f.error { throw EngineError(e) }
          print(ScalingText.summary(f))
        case (false, .rows(let x)): print(Results.table(x))
        case (false, .reproduce(let x)): print(x.table())
        case (false, .speedup(let x)): print(x.table())
        }
      } else {
        guard json || !rs.contains(where: { ["lmc", "scaling", "reproduce", "speedup"].contains($0.kind) }) else {
          throw EngineError(
            "lmc, scaling and reproduce runs have their own tables: give one at a time, or use --json, --csv or lth report"
          )
        }
        print(json ? jsonLine(RunResultList(rs)) : Results.sideBySide(rs.compactMap(\.rowsResult)))
      }
    }
  }
}
