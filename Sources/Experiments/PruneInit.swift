import Datasets
import Engine
import Foundation
import NN
import Pruning
import Training

/// Pruning at initialisation (`lth prune-init`): score the initial weights with a method
/// (``Pruning/ScoreMethods``), prune once (or over `rounds`) to each density, train with the
/// model's recipe. Also the paper's references: `--at-step S` scores the dense run's weights
/// at step S and trains on from there; `magnitude-after-training` prunes the trained dense
/// weights one-shot and retrains them like a lottery level (`--retrain`).
///
/// Store: `pai_<hash>/replicate_R/density_D/main/` (the files of a lottery level), the dense
/// run the references need in `replicate_R/dense/`, ablations in
/// `density_D/branch_<kind>_<hash>/`.
public struct PaIHParams: Codable, Equatable, Sendable, CanonicalJSON {
  public static let afterTraining = "magnitude-after-training"
  public var training: TrainingHParams
  public var method: String
  public var allocation: Allocation
  public var rounds: Int
  /// Examples per class in the score batch (data-driven methods only).
  public var scoreBatch: Int?
  /// Score the dense run's weights at this step instead of the initial ones.
  public var atStep: String?
  /// Tensors never pruned (`*` wildcards).
  public var ignore: [String]
  public var minDensity: Double?
  /// `magnitude-after-training` only: how the pruned network is retrained.
  public var retrain: RetrainMode?
  public var rewindStep: String?
  public var finetuneSteps: String?

  public init(
    training: TrainingHParams, method: String, allocation: Allocation, rounds: Int?, scoreBatch: Int?,
    atStep: String?, ignore: [String], minDensity: Double?, retrain: RetrainMode?, rewindStep: String?,
    finetuneSteps: String?
  ) throws {
    let known = ScoreMethods.names + [Self.afterTraining]
    guard known.contains(method) else {
      throw EngineError(
        "unknown method '\(method.escapingControlCharacters)'; use one of: \(known.joined(separator: ", "))")
    }
    let score = ScoreMethods.named(method)
    let r = rounds ?? score?.defaultRounds ?? 1
    guard r >= 1 else { throw CodingKeys.rounds.invalid("must be at least 1, got \(r)") }
    if let minDensity, !(minDensity > 0 && minDensity <= 1) {
      throw CodingKeys.minDensity.invalid("must be in (0, 1], got \(minDensity)")
    }
    let needsData = score?.needsData ?? false
    if let scoreBatch, !(scoreBatch >= 1) {
      throw CodingKeys.scoreBatch.invalid("must be at least 1, got \(scoreBatch)")
    }
    if method == Self.afterTraining {
      guard atStep == nil else { throw CodingKeys.atStep.invalid("does not apply to \(Self.afterTraining)") }
    } else if retrain != nil || finetuneSteps != nil {
      throw SettingError("retrain", "and --finetune-steps apply to --method \(Self.afterTraining) only")
    }
    if let a = atStep {
      do { _ = try StepSpec(parsing: a) } catch { throw CodingKeys.atStep.invalid("\(error)") }
    }
    self.training = training
    self.method = method
    self.allocation = allocation
    self.rounds = r
    self.scoreBatch = needsData ? (scoreBatch ?? 10) : nil
    self.atStep = atStep
    self.ignore = ignore
    self.minDensity = minDensity
    // Pruning after training keeps training the trained weights: learning-rate rewinding
    // (Renda et al. 2020, the strong form of the reference) unless told otherwise.
    let mode = method == Self.afterTraining ? (retrain ?? .lrRewind) : nil
    self.retrain = mode
    self.rewindStep = mode == nil ? nil : (rewindStep ?? "0it")
    self.finetuneSteps = mode == .finetune ? finetuneSteps : nil
  }

  /// The declaration of pruning at initialisation's hyperparameters (see
  /// ``HyperparameterKey``); `retrain`, `rewind_step` and `finetune_steps` share the
  /// lottery's flags and `ignore` is `--prune-ignore`.
  public enum CodingKeys: String, HyperparameterKey {
    case training, method, allocation, rounds
    case scoreBatch = "score_batch"
    case atStep = "at_step"
    case ignore
    case minDensity = "min_density"
    case retrain
    case rewindStep = "rewind_step"
    case finetuneSteps = "finetune_steps"

    public var flagName: String? {
      switch self {
      case .training: return nil
      case .ignore: return "prune-ignore"
      default: return stringValue.replacingOccurrences(of: "_", with: "-")
      }
    }
    public var help: String {
      switch self {
      case .training: return "The training hyperparameters."
      case .method: return "Scoring method: \((ScoreMethods.names + [PaIHParams.afterTraining]).joined(separator: ", "))."
      case .allocation: return "Density per tensor: global (one threshold), layerwise (each tensor the target) or erk."
      case .rounds: return "Score-and-prune rounds; round r prunes to d^(r/rounds)."
      case .scoreBatch: return "Examples per class in the score batch of snip and grasp."
      case .atStep: return "Score the dense run's weights at this step (e.g. 500it) and train on from there."
      case .ignore: return LotteryHParams.PruningKey.ignore.help
      case .minDensity: return "Minimum density of every pruned tensor."
      case .retrain, .rewindStep, .finetuneSteps:
        return "As for `lth lottery`, for \(PaIHParams.afterTraining) only."
      }
    }
    public var defaultSource: DefaultSource {
      switch self {
      case .training: return .derived("their own keys")
      case .method: return .required
      case .allocation: return .value("global")
      case .rounds: return .derived("100 for synflow, else 1")
      case .scoreBatch: return .value("10")
      case .atStep: return .derived("the initial weights")
      case .ignore: return .value("none")
      case .minDensity: return .derived("none")
      case .retrain: return .value(RetrainMode.lrRewind.rawValue)
      case .rewindStep: return .value("0it")
      case .finetuneSteps: return .derived("as many steps as rewinding replays")
      }
    }
  }
}

/// Parses `0.1,0.032,0.01` into densities in (0, 1], sorted from dense to sparse.
public func parseDensities(_ text: String) throws -> [Double] {
  var out: [Double] = []
  for part in text.split(separator: ",", omittingEmptySubsequences: false) {
    guard let d = Double(part.trimmingCharacters(in: .whitespaces)), d.isFinite else {
      throw EngineError("invalid density list '\(text.escapingControlCharacters)': write e.g. 0.1,0.032,0.01")
    }
    guard d > 0, d <= 1 else { throw EngineError("density must be in (0, 1], got \(d)") }
    if !out.contains(d) { out.append(d) }
  }
  return out.sorted(by: >)
}

/// The folder name of a target density: `density_0.032`.
public func densityFolder(_ d: Double) -> String { "density_\(d)" }

/// Runs PaI experiments and their ablations.
public final class PaIRunner: Experiment {
  public let hparams: PaIHParams
  public let setup: RunSetup
  public let root: String
  public let output: String
  public let progress: ProgressStyle
  public let allowCollapse: Bool
  /// The step scored and the first trained step (0 at initialisation).
  public let startIteration: Int
  /// `magnitude-after-training`: the rewind step and fine-tuning length.
  public let rewindIteration: Int
  public let finetuneIterations: Int
  public let pooled: [String]
  private var lock: FileLock?

  public init(
    _ h: PaIHParams, dataDir: String?, output: String, progress: ProgressStyle, allowCollapse: Bool
  ) throws {
    hparams = h
    self.output = output
    self.progress = progress
    self.allowCollapse = allowCollapse
    setup = try RunSetup(h.training, dataDir: dataDir)
    phases = PhaseRunner(setup: setup, progress: progress)
    let perEpoch = setup.iterationsPerEpoch
    startIteration = try h.atStep.map { try StepSpec(parsing: $0).iterations(perEpoch: perEpoch) } ?? 0
    guard startIteration < setup.totalSteps else {
      throw EngineError(
        "--at-step \(h.atStep ?? "") is not before the end of training (\(setup.totalSteps) iterations)")
    }
    rewindIteration = try h.rewindStep.map { try StepSpec(parsing: $0).iterations(perEpoch: perEpoch) } ?? 0
    guard rewindIteration < setup.totalSteps else {
      throw SettingError("rewind_step", "\(h.rewindStep ?? "") is not before the end of training")
    }
    if let f = h.finetuneSteps {
      finetuneIterations = try StepSpec(parsing: f).iterations(perEpoch: perEpoch)
      guard finetuneIterations > 0 else { throw SettingError("finetune_steps", "must be positive") }
    } else {
      finetuneIterations = setup.totalSteps - rewindIteration
    }
    let probe = try setup.makeNetwork(seed: 0)
    let names = probe.prunableParameters.map(\.0)
    try PruningPolicy.checkIgnorePatterns(h.ignore, names: names)
    pooled = names.filter { n in !h.ignore.contains { wildcardMatch($0, n) } }
    guard !pooled.isEmpty else { throw SettingError("prune_ignore", "leaves no tensor to prune") }
    if let per = h.scoreBatch {
      var counts = [Int](repeating: 0, count: setup.train.classes)
      for l in setup.train.labels { counts[Int(l)] += 1 }
      if let k = counts.indices.first(where: { counts[$0] < per }) {
        throw EngineError(
          "--score-batch \(per) examples per class is larger than the training set: class \(k) has \(counts[k]) examples"
        )
      }
    }
    root = Self.root(h, output: output)
  }

  public var needsDenseRun: Bool { hparams.method == PaIHParams.afterTraining || hparams.atStep != nil }
  public func denseDir(_ r: Int) -> String { RunLayout.replicate(root, r) + "/dense" }
  public func densityDir(_ r: Int, _ d: Double) -> String { Self.densityDir(root, r, d) }
  public func mainDir(_ r: Int, _ d: Double) -> String { RunLayout.main(densityDir(r, d)) }

  // The layout of a prune-init folder (planning reads it without building a runner).
  /// `<output>/pai_<hash>`.
  public static func root(_ h: PaIHParams, output: String) -> String {
    RunLayout.root(.pai, output: output, hash: h.hash)
  }
  /// `<root>/replicate_R/density_<d>`: the main line (`main`) and the ablations.
  public static func densityDir(_ root: String, _ r: Int, _ d: Double) -> String {
    RunLayout.replicate(root, r) + "/" + densityFolder(d)
  }

  @discardableResult
  public func open() throws -> Bool {
    let (l, existed) = try RunStore.openExperiment(
      output: output, root: root, hparamsJSON: hparams.canonicalJSON(), kind: "pai",
      convBackends: try setup.plannedConvBackends())
    lock = l
    return existed
  }

  /// Releases the experiment folder's lock once the command has recorded itself.
  public func releaseRoot() { lock = nil }

  public func hasUnfinished(replicates: [Int], densities: [Double], branch: BranchHParams? = nil) -> Bool {
    replicates.contains { r in
      densities.contains { d in
        let dir = branch.map { densityDir(r, d) + "/" + $0.folderName } ?? mainDir(r, d)
        return !FileManager.default.fileExists(atPath: RunFile.summary.path(in: dir))
      }
    }
  }

  public func checkMachine(command: String, requireSameCPU: Bool) throws {
    try MachineCheck.check(
      runDir: root, command: command, convBackends: try setup.plannedConvBackends(),
      requireSameCPU: requireSameCPU)
  }

  /// The phase trainer and mask files of lottery levels (one implementation).
  let phases: PhaseRunner

  /// The score batch of replicate `r`: the first `scoreBatch` examples of each class in a
  /// permutation drawn from `(seed, "score-batch", r)`, in Float64.
  func scoreBatch(replicate r: Int) -> ScoreBatch? {
    guard let per = hparams.scoreBatch else { return nil }
    if let b = scoreBatches[r] { return b }
    var rs = RandomStream(seed: hparams.training.seed, purpose: "score-batch", index: UInt64(r))
    var taken = [Int](repeating: 0, count: setup.train.classes)
    var indices: [Int] = []
    for i in rs.permutation(setup.train.count) where taken[Int(setup.train.labels[i])] < per {
      taken[Int(setup.train.labels[i])] += 1
      indices.append(i)
    }
    indices.sort()
    let xf = Tensor<Float>(zeros: [0])
    let labels = setup.train.gather(indices, into: xf)
    let x = Tensor<Double>(zeros: xf.shape)
    for i in 0..<xf.count { x[i] = Double(xf[i]) }
    let batch = ScoreBatch(x: x, labels: labels)
    scoreBatches[r] = batch
    return batch
  }
  /// Score batches by replicate (drawn once, used by every density and the inverted ablation).
  private var scoreBatches: [Int: ScoreBatch] = [:]

  /// Initialisation and data-order seeds of replicate `r` (those of a lottery run's level 0).
  func initSeeds(_ r: Int) -> (UInt64, UInt64) {
    (
      replicateSeed(hparams.training.seed, r),
      replicateSeed(hparams.training.dataOrderSeed, r, purpose: "replicate-data")
    )
  }

  /// Trains the dense run the references need: to `--at-step`, or to the end
  /// (`magnitude-after-training`, saving the rewind weights).
  func runDense(_ r: Int) throws {
    let dir = denseDir(r)
    try phases.makeDir(dir)
    let phaseLock = try RunStore.phaseLock(dir)
    defer { withExtendedLifetime(phaseLock) {} }
    let (initSeed, dataSeed) = initSeeds(r)
    let last = hparams.method == PaIHParams.afterTraining ? setup.totalSteps : startIteration
    if progress != .quiet, try TrainSummary.read(in: dir) == nil {
      print("replicate \(r): dense run, \(last) steps")
    }
    let schedule = setup.schedule
    var saves = [(0, RunFile.modelInit.path(in: dir))]
    if hparams.method == PaIHParams.afterTraining {
      saves.append((rewindIteration, RunFile.modelRewind.path(in: dir)))
    }
    _ = try phases.train(
      dir: dir, mask: Mask(ones: try setup.makeNetwork(seed: initSeed)), initSeed: initSeed,
      dataSeed: dataSeed,
      initialState: nil, firstStep: 0, lastStep: last, lr: { schedule($0) }, saveStates: saves)
  }

  /// The weights scored: the initial ones, the dense run's at `--at-step`, or its final ones.
  func scoredNetwork(_ r: Int) throws -> Network<Float> {
    let (initSeed, _) = initSeeds(r)
    let net = try setup.makeNetwork(seed: initSeed)
    if needsDenseRun { try ModelState.load(net, from: RunFile.modelFinal.path(in: denseDir(r))) }
    return net
  }

  /// Scores and selects the mask at density `d` (inverted for the ablation).
  func computeMask(_ r: Int, _ d: Double, invert: Bool) throws -> Mask {
    let scored = try scoredNetwork(r)
    let (initSeed, _) = initSeeds(r)
    let double = try setup.makeNetwork(seed: initSeed, as: Double.self)
    try double.copyState(from: scored)
    let method: any ScoreMethod = ScoreMethods.named(hparams.method) ?? MagnitudeScore()
    let seed = derivedSeed(hparams.training.seed, purpose: "pai-score", replicate: r)
    return try PaIPruner.prune(
      network: double, start: Mask(ones: scored), method: method, density: d, allocation: hparams.allocation,
      rounds: hparams.rounds, pooled: pooled, minDensity: hparams.minDensity, batch: scoreBatch(replicate: r),
      seed: seed, invert: invert)
  }

  /// Writes the mask with its connectivity; full collapse fails unless allowed.
  func decide(_ mask: Mask, in dir: String) throws {
    let c = try phases.connectivity(mask)
    if c.isCollapsed && !allowCollapse {
      throw PruningError(
        "\(c.collapseDescription(mask)) at density \(String(format: "%.4g", mask.density)); --allow-collapse trains anyway"
      )
    }
    try phases.writeMask(mask, dir, connectivity: c)
  }

  /// Trains a pruned network of replicate `r` into `dir` from the weights the method
  /// prescribes (`fresh`: new initial weights from `initSeed`, the reinit ablation).
  func trainPruned(_ r: Int, mask: Mask, dir: String, initSeed: UInt64, fresh: Bool) throws {
    let (_, dataSeed) = initSeeds(r)
    let schedule = setup.schedule
    let T = setup.totalSteps
    if hparams.method == PaIHParams.afterTraining {
      let k = rewindIteration
      let finalState = RunFile.modelFinal.path(in: denseDir(r))
      switch hparams.retrain ?? .weightRewind {
      case .weightRewind:
        _ = try phases.train(
          dir: dir, mask: mask, initSeed: initSeed, dataSeed: dataSeed,
          initialState: fresh ? nil : RunFile.modelRewind.path(in: denseDir(r)), firstStep: k, lastStep: T,
          lr: { schedule($0) })
      case .lrRewind:
        _ = try phases.train(
          dir: dir, mask: mask, initSeed: initSeed, dataSeed: dataSeed,
          initialState: fresh ? nil : finalState,
          firstStep: k, lastStep: T, lr: { schedule($0) })
      case .finetune:
        let finalLR = schedule(T - 1)
        _ = try phases.train(
          dir: dir, mask: mask, initSeed: initSeed, dataSeed: dataSeed,
          initialState: fresh ? nil : finalState,
          firstStep: T, lastStep: T + finetuneIterations, lr: { _ in finalLR })
      }
    } else {
      let state = hparams.atStep != nil && !fresh ? RunFile.modelFinal.path(in: denseDir(r)) : nil
      _ = try phases.train(
        dir: dir, mask: mask, initSeed: initSeed, dataSeed: dataSeed, initialState: state,
        firstStep: startIteration, lastStep: T, lr: { schedule($0) })
    }
  }

  /// Runs every density of replicate `r`, skipping finished phases.
  public func runReplicate(_ r: Int, densities: [Double]) throws {
    if needsDenseRun { try runDense(r) }
    let (initSeed, _) = initSeeds(r)
    // Every mask is decided (and checked for collapse) before any training. The phases'
    // locks are taken in folder order, so two processes never wait for each other in a ring.
    var masks: [Double: Mask] = [:]
    var locks: [FileLock] = []
    defer { withExtendedLifetime(locks) {} }
    for d in densities.sorted(by: { densityFolder($0) < densityFolder($1) }) {
      try phases.makeDir(mainDir(r, d))
      locks.append(try RunStore.phaseLock(mainDir(r, d)))
    }
    for d in densities {
      let dir = mainDir(r, d)
      if FileManager.default.fileExists(atPath: RunFile.mask.path(in: dir)) {
        masks[d] = try phases.loadMask(RunFile.mask.path(in: dir))
      } else {
        let mask = try computeMask(r, d, invert: false)
        try decide(mask, in: dir)
        masks[d] = mask
      }
    }
    for d in densities {
      let dir = mainDir(r, d)
      let mask = masks[d]!
      if try TrainSummary.read(in: dir) != nil { continue }
      if progress != .quiet {
        print(
          String(
            format: "replicate %d density %@: %@, kept %.3f%%", r, "\(d)", hparams.method, mask.density * 100)
        )
      }
      try trainPruned(r, mask: mask, dir: dir, initSeed: initSeed, fresh: false)
    }
  }

  public func requireFinished(replicate r: Int, density d: Double) throws {
    guard FileManager.default.fileExists(atPath: RunFile.summary.path(in: mainDir(r, d))) else {
      throw RunError(
        "density \(d) of replicate \(r) is unfinished or missing in \(root); run `lth prune-init` with the same flags first"
      )
    }
  }

  /// One ablation of density `d` of replicate `r` (see ``BranchKind``).
  public func runBranch(_ b: BranchHParams, replicate r: Int, density d: Double) throws {
    try requireFinished(replicate: r, density: d)
    let dir = densityDir(r, d) + "/" + b.folderName
    try phases.makeDir(dir)
    let phaseLock = try RunStore.phaseLock(dir)
    defer { withExtendedLifetime(phaseLock) {} }
    try RunStore.claim(
      directory: dir, hparamsJSON: b.canonicalJSON(), kind: "branch",
      convBackends: try setup.plannedConvBackends())
    if try TrainSummary.read(in: dir) != nil { return }
    let (initSeed, _) = initSeeds(r)
    let mainMask = try phases.loadMask(RunFile.mask.path(in: mainDir(r, d)))
    if progress != .quiet { print("replicate \(r) density \(d): branch \(b.kind.rawValue)") }
    let seed = derivedSeed(
      hparams.training.seed, purpose: "branch-mask", replicate: r, level: nil,
      branch: b.kind.rawValue + "/\(d)")
    var mask = mainMask
    var trainSeed = initSeed
    var fresh = false
    if FileManager.default.fileExists(atPath: RunFile.mask.path(in: dir)) {
      mask = try phases.loadMask(RunFile.mask.path(in: dir))
    } else {
      switch b.kind {
      case .shuffle, .randomPrune:
        mask = RandomPruner.like(mainMask, layout: b.layout ?? .layerwise, seed: seed)
      case .invert:
        mask = try computeMask(r, d, invert: true)
      case .reinit, .randomReinit, .retrain:
        mask = mainMask
      }
      try decide(mask, in: dir)
    }
    if b.kind == .reinit || b.kind == .randomReinit {
      trainSeed = derivedSeed(
        hparams.training.seed, purpose: "branch-init", replicate: r, level: nil,
        branch: b.kind.rawValue + "/\(d)")
      fresh = true
    }
    guard b.kind != .retrain else { throw EngineError("retrain branches run off lottery levels only") }
    try trainPruned(r, mask: mask, dir: dir, initSeed: trainSeed, fresh: fresh)
  }
}
