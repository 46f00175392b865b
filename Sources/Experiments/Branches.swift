import Datasets
import Engine
import Foundation
import NN
import Pruning
import Training

/// Branches run off a finished lottery level (OpenLTH's branches):
/// - `random-prune`: a random mask with the same per-tensor counts (`layerwise`) or the
///   same total density (`global`), trained from the rewind weights like the main line;
/// - `random-reinit`: the same mask, fresh initial weights drawn from
///   `(seed, replicate, level, branch)`, trained like the main line;
/// - `retrain`: the same mask and rewind weights, trained with other training flags
///   (data sets only with the same input shape and class count).
///
/// The ablations of the PaI paper, for lottery levels and PaI densities alike:
/// - `shuffle`: positions redrawn within each tensor, per-tensor counts kept (for lottery
///   levels the same operation as `random-prune --layout layerwise`);
/// - `reinit`: the same mask, fresh initial weights (for lottery levels: `random-reinit`);
/// - `invert`: keep the lowest-scoring weights instead of the highest at the same density
///   (for lottery levels: the smallest magnitudes of level L-1's trained weights).
public enum BranchKind: String, Codable, Sendable, CaseIterable {
  case randomPrune = "random-prune"
  case randomReinit = "random-reinit"
  case retrain
  case shuffle, reinit, invert
}

/// What defines a branch (hashed into its folder name).
public struct BranchHParams: Codable, Equatable, Sendable, CanonicalJSON {
  public var kind: BranchKind
  public var layout: PruningPolicy.Strategy?
  public var training: TrainingHParams?
  /// How a control retrains, when its lottery's main line does not use weight rewinding
  /// (absent for weight rewinding, so those branches keep the hash they always had): a
  /// control retrains the way its main line does.
  public var retrain: RetrainMode?
  public init(
    kind: BranchKind, layout: PruningPolicy.Strategy?, training: TrainingHParams?, retrain: RetrainMode? = nil
  ) {
    self.kind = kind
    self.layout = layout
    self.training = training
    self.retrain = retrain
  }
  /// `branch_<kind>_<hash>`.
  public var folderName: String { "branch_\(kind.rawValue)_\(hash)" }
  /// The folder name under the old FNV hash (migrated on first use).
  public var legacyFolderName: String { "branch_\(kind.rawValue)_\(legacyHash)" }
}

/// The highest level a level list may name (IMP at 20% a level keeps 0.8^1000 of the weights).
public let maxLevel = 1000

/// Parses level lists such as `0-3,5,7` (levels `0...maxLevel`).
public func parseLevels(_ text: String) throws -> [Int] {
  var out: [Int] = []
  let bad = EngineError("invalid level list '\(text.escapingControlCharacters)': write e.g. 0-3,5,7")
  for part in text.split(separator: ",", omittingEmptySubsequences: false) {
    let ends = part.split(separator: "-", omittingEmptySubsequences: false)
    guard (1...2).contains(ends.count), let a = Int(ends[0]), a >= 0 else { throw bad }
    let b = ends.count == 2 ? Int(ends[1]) : a
    guard let b, b >= a else { throw bad }
    guard b <= maxLevel else {
      throw EngineError("invalid level list '\(text.escapingControlCharacters)': levels go up to \(maxLevel)")
    }
    out += Array(a...b)
  }
  guard !out.isEmpty else { throw bad }
  return Array(Set(out)).sorted()
}

extension LotteryRunner {
  /// Whether branch `b` is unfinished at any of these levels and replicates (under its
  /// folder name or its pre-SHA-256 one).
  public func hasUnfinishedBranches(_ b: BranchHParams, replicates: [Int], levels: [Int]) -> Bool {
    replicates.contains { r in
      levels.contains { l in
        ![b.folderName, b.legacyFolderName].contains {
          FileManager.default.fileExists(atPath: RunFile.summary.path(in: RunLayout.level(root, replicate: r, level: l) + "/" + $0))
        }
      }
    }
  }

  /// Runs one branch of level `level` of replicate `r` (skipped when finished).
  /// Branches run off finished main-line levels only.
  public func requireFinishedLevel(replicate r: Int, level: Int) throws {
    guard FileManager.default.fileExists(atPath: RunFile.summary.path(in: levelDir(r, level))) else {
      throw RunError(
        "level \(level) of replicate \(r) is unfinished or missing in \(root); run `lth lottery` with the same flags first"
      )
    }
  }

  public func runBranch(_ b: BranchHParams, replicate r: Int, level: Int, retrainSetup: RunSetup?) throws {
    try requireFinishedLevel(replicate: r, level: level)
    let main = levelDir(r, level)
    let dir = Self.branchDir(root, r, level, b)
    try RunStore.migrate(
      from: RunLayout.level(root, replicate: r, level: level) + "/" + b.legacyFolderName, to: dir,
      hparamsJSON: b.canonicalJSON())
    try makeDir(dir)
    let phaseLock = try RunStore.phaseLock(dir)
    defer { withExtendedLifetime(phaseLock) {} }
    try RunStore.claim(
      directory: dir, hparamsJSON: b.canonicalJSON(), kind: "branch",
      convBackends: try (retrainSetup ?? setup).plannedConvBackends())
    let initSeed = replicateSeed(hparams.training.seed, r)
    if try TrainSummary.read(in: dir) != nil {
      // Finished. Only a sparsity.json lost to a kill (see writeMask) needs the network.
      let fm = FileManager.default
      if fm.fileExists(atPath: RunFile.mask.path(in: dir)) && !fm.fileExists(atPath: RunFile.sparsity.path(in: dir)) {
        _ = try loadMask(RunFile.mask.path(in: dir))
      }
      return
    }
    let probe = try setup.makeNetwork(seed: initSeed)
    let dataSeed = replicateSeed(hparams.training.dataOrderSeed, r, purpose: "replicate-data")
    let mainMask = try Mask.load(RunFile.mask.path(in: main), for: probe)
    let rewind = RunFile.modelRewind.path(in: levelDir(r, 0))
    let schedule = setup.schedule
    let k = rewindIteration
    let T = setup.totalSteps
    // A control retrains the way the main line does (level 0 is dense training for all).
    // Weight rewinding: the rewind-step weights (a reinit: fresh ones), the schedule from k.
    // Learning-rate rewinding: the weights the main line prunes (level L-1's trained ones;
    // a reinit: fresh ones), the schedule replayed from k. Fine-tuning: the same weights,
    // `finetune_steps` more at the final rate.
    let mode = level == 0 ? RetrainMode.weightRewind : hparams.retrain
    let source = level == 0 ? rewind : RunFile.modelFinal.path(in: levelDir(r, level - 1))
    func retrain(_ mask: Mask, initSeed: UInt64, from start: String?) throws {
      switch mode {
      case .weightRewind, .lrRewind:
        _ = try trainPhase(
          dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed, initialState: start,
          firstStep: k, lastStep: T, lr: { schedule($0) })
      case .finetune:
        let finalLR = schedule(T - 1)
        _ = try trainPhase(
          dir: dir, mask: mask, setup: setup, initSeed: initSeed, dataSeed: dataSeed, initialState: start,
          firstStep: T, lastStep: T + finetuneIterations, lr: { _ in finalLR })
      }
    }
    if progress != .quiet { print("replicate \(r) level \(level): branch \(b.kind.rawValue)") }
    switch b.kind {
    case .randomPrune, .shuffle, .invert:
      let maskPath = RunFile.mask.path(in: dir)
      let mask: Mask
      if FileManager.default.fileExists(atPath: maskPath) {
        mask = try loadMask(maskPath)
      } else {
        let seed = derivedSeed(
          hparams.training.seed, purpose: "branch-mask", replicate: r, level: level, branch: b.kind.rawValue)
        if b.kind == .invert {
          mask = try invertedMask(replicate: r, level: level, initSeed: initSeed)
        } else {
          mask = RandomPruner.like(mainMask, layout: b.layout ?? .layerwise, seed: seed)
        }
        try writeMask(mask, dir)
      }
      try retrain(mask, initSeed: initSeed, from: mode == .weightRewind ? rewind : source)
    case .randomReinit, .reinit:
      try writeMask(mainMask, dir)
      let seed = derivedSeed(
        hparams.training.seed, purpose: "branch-init", replicate: r, level: level, branch: b.kind.rawValue)
      try retrain(mainMask, initSeed: seed, from: nil)
    case .retrain:
      guard let rs = retrainSetup else { throw EngineError("retrain branch needs training flags") }
      guard rs.train.shape == setup.train.shape, rs.train.classes == setup.train.classes else {
        throw EngineError(
          "retrain: data set \(rs.hparams.dataset) has input \(rs.train.shape) and \(rs.train.classes) classes; the lottery run used \(setup.train.shape) and \(setup.train.classes)"
        )
      }
      try writeMask(mainMask, dir)
      let rk = min(k, rs.totalSteps - 1)
      let rschedule = rs.schedule
      _ = try trainPhase(
        dir: dir, mask: mainMask, setup: rs, initSeed: initSeed, dataSeed: dataSeed, initialState: rewind,
        firstStep: rk, lastStep: rs.totalSteps, lr: { rschedule($0) })
    }
  }

  /// Level `level` pruned from level `level - 1` keeping the smallest magnitudes, with the
  /// main line's counts (level 0: the dense mask).
  func invertedMask(replicate r: Int, level: Int, initSeed: UInt64) throws -> Mask {
    let probe = try setup.makeNetwork(seed: initSeed)
    guard level > 0 else { return Mask(ones: probe) }
    let prev = levelDir(r, level - 1)
    let trained = try setup.makeNetwork(seed: initSeed)
    try ModelState.load(trained, from: RunFile.modelFinal.path(in: prev))
    let prevMask = try Mask.load(RunFile.mask.path(in: prev), for: probe)
    return try MagnitudePruner.prune(
      trained, mask: prevMask, policy: hparams.pruning, level: level, invert: true)
  }
}
