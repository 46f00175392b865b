import Datasets
import Engine
import Families
import Foundation
import NN
import Pruning
import Training

/// How a pruned network is retrained (Renda et al. 2020):
/// - `weight-rewind`: surviving weights and batch-norm state reset to those saved at the
///   rewind step, training replayed from there (rewind step 0: the original LTH experiment);
/// - `lr-rewind`: keep the trained weights, replay the learning-rate schedule from the
///   rewind step;
/// - `finetune`: keep the trained weights, train `finetune_steps` more at the final rate.
public enum RetrainMode: String, Codable, Sendable, CaseIterable {
  case weightRewind = "weight-rewind"
  case lrRewind = "lr-rewind"
  case finetune
}

/// Everything that defines a lottery experiment (levels, replicates, threads and output
/// are not part of it and are not hashed).
public struct LotteryHParams: Codable, Equatable, Sendable, CanonicalJSON {
  public var training: TrainingHParams
  public var pruning: PruningPolicy
  public var rewindStep: String
  public var retrain: RetrainMode
  /// Resolved fine-tuning length (`finetune` only; default: as many steps as rewinding replays).
  public var finetuneSteps: String?

  public init(
    training: TrainingHParams, pruning: PruningPolicy, rewindStep: String, retrain: RetrainMode,
    finetuneSteps: String?
  ) {
    self.training = training
    self.pruning = pruning
    self.rewindStep = rewindStep
    self.retrain = retrain
    self.finetuneSteps = finetuneSteps
  }

  /// The declaration of the lottery's own hyperparameters (see ``HyperparameterKey``);
  /// `training` and `pruning` are groups (``TrainingHParams/CodingKeys``, ``PruningKey``).
  public enum CodingKeys: String, HyperparameterKey {
    case training, pruning
    case rewindStep = "rewind_step"
    case retrain
    case finetuneSteps = "finetune_steps"

    public var flagName: String? {
      switch self {
      case .training, .pruning: return nil
      default: return stringValue.replacingOccurrences(of: "_", with: "-")
      }
    }
    public var help: String {
      switch self {
      case .training: return "The training hyperparameters."
      case .pruning: return "The pruning policy."
      case .rewindStep:
        return "Rewind step (weights saved there during level 0), e.g. 0it, 500it, 1ep, or T/16 (a sixteenth of training)."
      case .retrain: return "Retraining of each pruned level."
      case .finetuneSteps: return "Fine-tuning length (--retrain finetune)."
      }
    }
    public var defaultSource: DefaultSource {
      switch self {
      case .training, .pruning: return .derived("their own keys")
      case .rewindStep: return .derived("the family's recipe: 0it for LeNet and Conv-N, T/16 for ResNet and VGG")
      case .retrain:
        return .derived(
          "weight-rewind for lth lottery and branch; lr-rewind for prune-init's magnitude-after-training")
      case .finetuneSteps: return .derived("as many steps as rewinding replays")
      }
    }
  }

  /// The declaration of the pruning policy's keys (``Pruning/PruningPolicy``'s JSON keys)
  /// with their flags.
  public enum PruningKey: String, HyperparameterKey {
    case strategy, fraction, convFraction, outputFraction, ignore

    public var flagName: String? {
      switch self {
      case .strategy: return "pruning-strategy"
      case .fraction: return "pruning-fraction"
      case .convFraction: return "pruning-fraction-conv"
      case .outputFraction: return "pruning-fraction-output"
      case .ignore: return "prune-ignore"
      }
    }
    public var help: String {
      switch self {
      case .strategy: return "Pruning strategy."
      case .fraction: return "Fraction of remaining weights pruned per level, in (0, 1)."
      case .convFraction: return "Fraction for convolution weights."
      case .outputFraction: return "Fraction for the output layer (0: never pruned)."
      case .ignore: return "Tensors never pruned, comma separated, * wildcards (e.g. conv.weight,fc.*)."
      }
    }
    public var defaultSource: DefaultSource { .recipe }
  }

  /// `b` as this lottery's control: it retrains the way the main line does (recorded in
  /// its hash unless that is weight rewinding). A `retrain` branch brings its own training.
  public func branch(_ b: BranchHParams) -> BranchHParams {
    var out = b
    out.retrain = b.kind == .retrain || retrain == .weightRewind ? nil : retrain
    return out
  }

  /// Key of level 0, which depends only on training and the rewind step (not on pruning or
  /// the retraining mode), so experiments that differ only there can share it.
  public func levelZeroKey(replicate: Int) -> String {
    RunHash.short(training.canonicalJSON() + "|rewind=" + rewindStep + "|replicate=\(replicate)")
  }

  /// ``levelZeroKey(replicate:)`` as builds before SHA-256 wrote it (still matched on adoption).
  public func legacyLevelZeroKey(replicate: Int) -> String {
    RunHash.legacyFNV(training.legacyJSON() + "|rewind=" + rewindStep + "|replicate=\(replicate)")
  }
}

/// Every derived seed: one keyed derivation of `(seed, purpose, replicate, level, branch)`.
///
/// The optional fields are appended to the purpose as `/level=L` and `/branch=K`, and the
/// result addresses a ``Engine/RandomStream`` (a hash of the key mixed with the seed), so
/// two different tuples never share a seed by arithmetic: the old `seed + level` made
/// (seed s, level L+1) collide with (seed s+1, level L). Without level and branch this is
/// the replicate seed the main line has always used, so main-line results are unchanged.
public func derivedSeed(
  _ base: UInt64, purpose: String, replicate: Int, level: Int? = nil, branch: String? = nil
) -> UInt64 {
  var key = purpose
  if let level { key += "/level=\(level)" }
  if let branch { key += "/branch=\(branch)" }
  var s = RandomStream(seed: base, purpose: key, index: UInt64(replicate))
  return s.next()
}

/// Seeds of replicate `r` (numbered from 1), derived from the base seed.
public func replicateSeed(_ base: UInt64, _ replicate: Int, purpose: String = "replicate") -> UInt64 {
  derivedSeed(base, purpose: purpose, replicate: replicate)
}

/// Runs lottery experiments and their branches.
public final class LotteryRunner: Experiment {
  public let hparams: LotteryHParams
  public let setup: RunSetup
  public let root: String
  public let output: String
  public let progress: ProgressStyle
  /// Iterations: rewind step k and training length T.
  public let rewindIteration: Int
  public let finetuneIterations: Int
  private var lock: FileLock?
  /// Phase training and mask files, shared with ``PaIRunner``.
  let phases: PhaseRunner

  public init(_ h: LotteryHParams, dataDir: String?, output: String, progress: ProgressStyle) throws {
    hparams = h
    self.output = output
    self.progress = progress
    setup = try RunSetup(h.training, dataDir: dataDir)
    phases = PhaseRunner(setup: setup, progress: progress)
    rewindIteration = try rewindIterations(
      h.rewindStep, perEpoch: setup.iterationsPerEpoch, total: setup.totalSteps)
    guard rewindIteration < setup.totalSteps else {
      throw EngineError(
        "--rewind-step \(h.rewindStep) (\(rewindIteration) iterations) is not before the end of training (\(setup.totalSteps) iterations)"
      )
    }
    if let f = h.finetuneSteps {
      finetuneIterations = try StepSpec(parsing: f).iterations(perEpoch: setup.iterationsPerEpoch)
      guard finetuneIterations > 0 else { throw SettingError("finetune_steps", "must be positive") }
    } else {
      finetuneIterations = setup.totalSteps - rewindIteration
    }
    // Validate the pruning policy against the model before any training (and hashing).
    _ = try h.pruning.fractions(for: try setup.makeNetwork(seed: 0))
    root = Self.root(h, output: output)
  }

  /// Fails, before any training, when the plan for levels `0...levels` is impossible:
  /// pruning counts of every level (``Pruning/PruningPolicy/validateSchedule(for:levels:)``).
  public func validatePlan(levels: Int) throws {
    try hparams.pruning.validateSchedule(for: try setup.makeNetwork(seed: 0), levels: levels)
  }

  /// Creates and locks the experiment folder (and records its hyperparameters), after
  /// migrating a folder named by the old FNV hash. Returns whether it existed before.
  @discardableResult
  public func open() throws -> Bool {
    try RunStore.makeDirectory(output)
    try RunStore.migrate(
      from: RunLayout.root(.lottery, output: output, hash: hparams.legacyHash), to: root, hparamsJSON: hparams.canonicalJSON())
    try RunStore.makeDirectory(root)
    lock = try RunStore.lock(root, wait: true)
    return try RunStore.claim(
      directory: root, hparamsJSON: hparams.canonicalJSON(), kind: "lottery",
      convBackends: try setup.plannedConvBackends())
  }

  /// Releases the experiment folder's lock (taken by ``open()``) once the command has
  /// recorded itself; phases take their own locks (``RunStore/phaseLock(_:)``).
  public func releaseRoot() { lock = nil }

  /// Whether any phase of levels `0...levels` of these replicates is unfinished.
  public func hasUnfinishedLevels(replicates: [Int], levels: Int) -> Bool {
    replicates.contains { r in
      (0...levels).contains { !FileManager.default.fileExists(atPath: RunFile.summary.path(in: levelDir(r, $0))) }
    }
  }

  /// Checks the machine (``MachineCheck``) before training more of this experiment: call
  /// it after ``open()`` when there is work left (a fresh experiment is never checked).
  public func checkMachine(command: String, requireSameCPU: Bool) throws {
    try MachineCheck.check(
      runDir: root, command: command, convBackends: try setup.plannedConvBackends(),
      requireSameCPU: requireSameCPU)
  }

  public func levelDir(_ r: Int, _ l: Int) -> String { Self.levelDir(root, r, l) }

  // The layout of a lottery folder (names from ``Storage/RunLayout``); planning reads it
  // without building a runner.
  /// `<output>/lottery_<hash>`.
  public static func root(_ h: LotteryHParams, output: String) -> String {
    RunLayout.root(.lottery, output: output, hash: h.hash)
  }
  /// The main line of level `l` of replicate `r`: `<root>/replicate_R/level_L/main`.
  public static func levelDir(_ root: String, _ r: Int, _ l: Int) -> String {
    RunLayout.main(RunLayout.level(root, replicate: r, level: l))
  }
  /// A branch of level `l`: `<root>/replicate_R/level_L/branch_<kind>_<hash>`.
  public static func branchDir(_ root: String, _ r: Int, _ l: Int, _ b: BranchHParams) -> String {
    RunLayout.level(root, replicate: r, level: l) + "/" + b.folderName
  }
  /// The file whose presence marks a phase folder finished.
  public static func marker(_ phaseDir: String) -> String { RunFile.summary.path(in: phaseDir) }

  func makeDir(_ d: String) throws { try phases.makeDir(d) }

  /// Trains one phase into `dir` unless its `summary.json` exists (then returns it).
  func trainPhase(
    dir: String, mask: Mask, setup: RunSetup, initSeed: UInt64, dataSeed: UInt64, initialState: String?,
    firstStep: Int, lastStep: Int, lr: @escaping (Int) -> Double, saveStates: [(step: Int, path: String)] = []
  ) throws -> TrainSummary {
    try phases.train(
      dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed, initialState: initialState,
      firstStep: firstStep, lastStep: lastStep, lr: lr, saveStates: saveStates)
  }

  /// Writes the mask with its connectivity (see ``PhaseRunner/writeMask(_:_:connectivity:)``).
  func writeMask(_ m: Mask, _ dir: String) throws { try phases.writeMask(m, dir, connectivity: nil) }

  func loadMask(_ path: String) throws -> Mask { try phases.loadMask(path) }

  /// Copies a finished level 0 with the same key from another experiment, if any.
  func adoptLevelZero(replicate r: Int, into dir: String) throws -> Bool {
    let keys = [hparams.levelZeroKey(replicate: r), hparams.legacyLevelZeroKey(replicate: r)]
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
    for e in entries where RunLayout.kind(ofFolder: e) == .lottery && output + "/" + e != root {
      let src = Self.levelDir(output + "/" + e, r, 0)
      guard let k = try? String(contentsOfFile: src + "/level0_key", encoding: .utf8), keys.contains(k),
        FileManager.default.fileExists(atPath: RunFile.summary.path(in: src))
      else { continue }
      // The checkpoint goes last (then the summary): a kill before it leaves a folder that
      // trains from scratch, never one that resumes without its init and rewind states.
      for f: RunFile in [
        .metrics, .metricsCSV, .modelInit, .modelRewind, .modelFinal, .provenance, .checkpoint,
      ]
      where FileManager.default.fileExists(atPath: f.path(in: src)) {
        try AtomicFile.write(try AtomicFile.read(f.path(in: src)), to: f.path(in: dir))
      }
      var s = try TrainSummary.read(in: src)!
      s.runDir = dir
      try s.write(in: dir)
      return true
    }
    return false
  }

  /// Runs levels `0...levels` of replicate `r`, skipping every finished phase.
  public func runReplicate(_ r: Int, levels: Int) throws {
    let initSeed = replicateSeed(hparams.training.seed, r)
    let dataSeed = replicateSeed(hparams.training.dataOrderSeed, r, purpose: "replicate-data")
    let T = setup.totalSteps
    let k = rewindIteration
    let schedule = setup.schedule
    let probe = try setup.makeNetwork(seed: initSeed)
    for level in 0...levels {
      let dir = levelDir(r, level)
      try makeDir(dir)
      let phaseLock = try RunStore.phaseLock(dir)
      defer { withExtendedLifetime(phaseLock) {} }
      if level == 0 {
        if FileManager.default.fileExists(atPath: RunFile.mask.path(in: dir)) {
          _ = try loadMask(RunFile.mask.path(in: dir))
        } else {
          try writeMask(Mask(ones: probe), dir)
        }
        try AtomicFile.write(hparams.levelZeroKey(replicate: r), to: dir + "/level0_key")
        if try TrainSummary.read(in: dir) == nil, try adoptLevelZero(replicate: r, into: dir) {
          if progress != .quiet {
            print("replicate \(r) level 0: reused from an experiment with the same training")
          }
          continue
        }
        let finished = try TrainSummary.read(in: dir) != nil
        if progress != .quiet && !finished { print("replicate \(r) level 0: dense, training \(T) steps") }
        _ = try trainPhase(
          dir: dir, mask: Mask(ones: probe), setup: setup, initSeed: initSeed, dataSeed: dataSeed,
          initialState: nil, firstStep: 0, lastStep: T, lr: { schedule($0) },
          saveStates: [(0, RunFile.modelInit.path(in: dir)), (k, RunFile.modelRewind.path(in: dir))])
        continue
      }
      let prev = levelDir(r, level - 1)
      let maskPath = RunFile.mask.path(in: dir)
      let mask: Mask
      if FileManager.default.fileExists(atPath: maskPath) {
        mask = try loadMask(maskPath)
      } else {
        let trained = try setup.makeNetwork(seed: initSeed)
        try ModelState.load(trained, from: RunFile.modelFinal.path(in: prev))
        let prevMask = try Mask.load(RunFile.mask.path(in: prev), for: probe)
        mask = try MagnitudePruner.prune(trained, mask: prevMask, policy: hparams.pruning, level: level)
        try writeMask(mask, dir)
      }
      if try TrainSummary.read(in: dir) != nil { continue }
      if progress != .quiet {
        print(
          String(
            format: "replicate %d level %d: density %.2f%%, %@", r, level, mask.density * 100,
            hparams.retrain.rawValue))
      }
      switch hparams.retrain {
      case .weightRewind:
        _ = try trainPhase(
          dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed,
          initialState: RunFile.modelRewind.path(in: levelDir(r, 0)), firstStep: k, lastStep: T,
          lr: { schedule($0) })
      case .lrRewind:
        _ = try trainPhase(
          dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed,
          initialState: RunFile.modelFinal.path(in: prev), firstStep: k, lastStep: T, lr: { schedule($0) })
      case .finetune:
        let finalLR = schedule(T - 1)
        _ = try trainPhase(
          dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed,
          initialState: RunFile.modelFinal.path(in: prev), firstStep: T, lastStep: T + finetuneIterations,
          lr: { _ in finalLR })
      }
    }
  }
}

/// What a user may set of a lottery experiment besides training; nil (or the default) takes
/// the model family's recipe. `lth lottery`'s flags fill it.
public struct LotteryOverrides: Sendable {
  public var pruningStrategy: PruningPolicy.Strategy?
  /// Fraction of the remaining weights pruned per level, in (0, 1).
  public var pruningFraction: Double?
  public var pruningFractionConv: Double?
  /// 0: the output layer is never pruned.
  public var pruningFractionOutput: Double?
  /// Tensors never pruned (`*` wildcards).
  public var pruneIgnore: [String]?
  public var retrain = RetrainMode.weightRewind
  /// Step strings: `0it`, `500it`, `1ep`.
  /// Nil: the family's recipe (`0it`, or `T/16` for ResNet and VGG).
  public var rewindStep: String?
  public var finetuneSteps: String?
  public init() {}
}

extension LotteryHParams {
  /// The lottery's hyperparameters: the family's pruning recipe with `o` applied, checked.
  public static func resolve(_ training: TrainingHParams, _ o: LotteryOverrides = LotteryOverrides()) throws
    -> LotteryHParams
  {
    var p = try Recipe.forModel(training.model).pruning
    typealias P = PruningKey
    if let v = o.pruningStrategy, v != p.strategy {
      // Switching strategy starts from the recipe's default fraction only.
      p = PruningPolicy(
        strategy: v, fraction: p.fraction,
        outputFraction: v == .global ? p.outputFraction.flatMap { $0 == 0 ? 0 : nil } : p.outputFraction)
    }
    if let f = o.pruningFraction { p.fraction = f }
    if let f = o.pruningFractionConv { p.convFraction = f }
    if let f = o.pruningFractionOutput { p.outputFraction = f }
    if let i = o.pruneIgnore { p.ignore = i }
    guard p.fraction > 0 && p.fraction < 1 else { throw P.fraction.invalid("must be in (0, 1), got \(p.fraction)") }
    for (key, f) in [(P.convFraction, p.convFraction), (.outputFraction, p.outputFraction)] {
      if let f, !(f >= 0 && f < 1) { throw key.invalid("must be in [0, 1), got \(f)") }
    }
    let mode = o.retrain
    let rewindStep = try o.rewindStep ?? Recipe.forModel(training.model).rewindStep
    do { try validateRewindStep(rewindStep) } catch { throw CodingKeys.rewindStep.invalid("\(error)") }
    if let f = o.finetuneSteps {
      guard mode == .finetune else { throw CodingKeys.finetuneSteps.invalid("needs --retrain finetune") }
      do { _ = try StepSpec(parsing: f) } catch { throw CodingKeys.finetuneSteps.invalid("\(error)") }
    }
    return LotteryHParams(
      training: training, pruning: p, rewindStep: rewindStep, retrain: mode, finetuneSteps: o.finetuneSteps)
  }
}

/// A rewind step: a step (`0it`, `500it`, `1ep`) or `T/N`, the N-th part of the training
/// length (rounded down), which scales with `--training-steps`.
public func validateRewindStep(_ text: String) throws {
  if text.hasPrefix("T/") {
    guard let n = Int(text.dropFirst(2)), n >= 1 else {
      throw EngineError("invalid rewind step '\(text.escapingControlCharacters)': write T/N with N >= 1, e.g. T/16")
    }
    return
  }
  _ = try StepSpec(parsing: text)
}

/// The iterations of a rewind step (see ``validateRewindStep(_:)``) for a run of `total`
/// iterations with `perEpoch` iterations per epoch.
public func rewindIterations(_ text: String, perEpoch: Int, total: Int) throws -> Int {
  try validateRewindStep(text)
  if text.hasPrefix("T/"), let n = Int(text.dropFirst(2)) { return total / n }
  return try StepSpec(parsing: text).iterations(perEpoch: perEpoch)
}
