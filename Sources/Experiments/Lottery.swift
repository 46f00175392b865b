import Data
import Engine
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

  enum CodingKeys: String, CodingKey {
    case training, pruning, retrain
    case rewindStep = "rewind_step"
    case finetuneSteps = "finetune_steps"
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
public final class LotteryRunner {
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
    rewindIteration = try StepSpec(parsing: h.rewindStep).iterations(perEpoch: setup.iterationsPerEpoch)
    guard rewindIteration < setup.totalSteps else {
      throw EngineError(
        "--rewind-step \(h.rewindStep) (\(rewindIteration) iterations) is not before the end of training (\(setup.totalSteps) iterations)"
      )
    }
    if let f = h.finetuneSteps {
      finetuneIterations = try StepSpec(parsing: f).iterations(perEpoch: setup.iterationsPerEpoch)
      guard finetuneIterations > 0 else { throw EngineError("--finetune-steps must be positive") }
    } else {
      finetuneIterations = setup.totalSteps - rewindIteration
    }
    // Validate the pruning policy against the model before any training (and hashing).
    _ = try h.pruning.fractions(for: try setup.makeNetwork(seed: 0))
    root = output + "/lottery_" + h.hash
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
      from: output + "/lottery_" + hparams.legacyHash, to: root, hparamsJSON: hparams.canonicalJSON())
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
      (0...levels).contains { !FileManager.default.fileExists(atPath: levelDir(r, $0) + "/summary.json") }
    }
  }

  /// Checks the machine (``MachineCheck``) before training more of this experiment: call
  /// it after ``open()`` when there is work left (a fresh experiment is never checked).
  public func checkMachine(command: String, requireSameCPU: Bool) throws {
    try MachineCheck.check(
      runDir: root, command: command, convBackends: try setup.plannedConvBackends(),
      requireSameCPU: requireSameCPU)
  }

  public func levelDir(_ r: Int, _ l: Int) -> String { "\(root)/replicate_\(r)/level_\(l)/main" }

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
    for e in entries where e.hasPrefix("lottery_") && output + "/" + e != root {
      let src = "\(output)/\(e)/replicate_\(r)/level_0/main"
      guard let k = try? String(contentsOfFile: src + "/level0_key", encoding: .utf8), keys.contains(k),
        FileManager.default.fileExists(atPath: src + "/summary.json")
      else { continue }
      // The checkpoint goes last (then the summary): a kill before it leaves a folder that
      // trains from scratch, never one that resumes without its init and rewind states.
      for f in [
        "metrics.jsonl", "metrics.csv", "model_init.safetensors", "model_rewind.safetensors",
        "model_final.safetensors", "provenance.json", "checkpoint.safetensors",
      ]
      where FileManager.default.fileExists(atPath: src + "/" + f) {
        try AtomicFile.write(try AtomicFile.read(src + "/" + f), to: dir + "/" + f)
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
        if FileManager.default.fileExists(atPath: dir + "/mask.safetensors") {
          _ = try loadMask(dir + "/mask.safetensors")
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
          saveStates: [(0, dir + "/model_init.safetensors"), (k, dir + "/model_rewind.safetensors")])
        continue
      }
      let prev = levelDir(r, level - 1)
      let maskPath = dir + "/mask.safetensors"
      let mask: Mask
      if FileManager.default.fileExists(atPath: maskPath) {
        mask = try loadMask(maskPath)
      } else {
        let trained = try setup.makeNetwork(seed: initSeed)
        try ModelState.load(trained, from: prev + "/model_final.safetensors")
        let prevMask = try Mask.load(prev + "/mask.safetensors", for: probe)
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
          initialState: levelDir(r, 0) + "/model_rewind.safetensors", firstStep: k, lastStep: T,
          lr: { schedule($0) })
      case .lrRewind:
        _ = try trainPhase(
          dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed,
          initialState: prev + "/model_final.safetensors", firstStep: k, lastStep: T, lr: { schedule($0) })
      case .finetune:
        let finalLR = schedule(T - 1)
        _ = try trainPhase(
          dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed,
          initialState: prev + "/model_final.safetensors", firstStep: T, lastStep: T + finetuneIterations,
          lr: { _ in finalLR })
      }
    }
  }
}
