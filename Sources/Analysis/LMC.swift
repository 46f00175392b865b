import Datasets
import Engine
import Experiments
import Foundation
import NN
import Pruning
import Training

/// What defines an instability experiment (hashed). Spawn steps, copies and replicates are
/// not hashed: adding one extends the run.
public struct LMCHParams: Codable, Equatable, Sendable, CanonicalJSON {
  public var training: TrainingHParams
  /// The lottery run (`lottery_<hash>` folder name) and level whose mask is used, if any.
  public var maskRun: String?
  public var maskLevel: Int?
  /// A random mask with the lottery mask's per-tensor counts instead of the mask itself.
  public var randomMask: Bool
  public var bn: BatchNormMode
  public var points: Int
  public var trainEvalSize: Int
  public var bnExamples: Int
  /// `fresh` for a subnetwork: its children start from the parent's weights at k with a
  /// fresh optimizer, as a lottery level rewound to k does (absent for the dense network,
  /// whose children resume the parent's full state).
  public var childOptimizerState: String?

  public init(
    training: TrainingHParams, maskRun: String?, maskLevel: Int?, randomMask: Bool, bn: BatchNormMode,
    points: Int, trainEvalSize: Int, bnExamples: Int
  ) throws {
    guard points >= 2 else { throw CodingKeys.points.invalid("must be at least 2, got \(points)") }
    guard trainEvalSize >= 1 else { throw CodingKeys.trainEvalSize.invalid("must be at least 1") }
    guard bnExamples >= 1 else { throw CodingKeys.bnExamples.invalid("must be at least 1") }
    guard (maskRun == nil) == (maskLevel == nil) else {
      throw CodingKeys.maskRun.invalid("and --level go together")
    }
    guard !randomMask || maskRun != nil else {
      throw CodingKeys.randomMask.invalid("needs --mask-from and --level (its density and per-tensor counts)")
    }
    self.training = training
    self.maskRun = maskRun
    self.maskLevel = maskLevel
    self.randomMask = randomMask
    self.bn = bn
    self.points = points
    self.trainEvalSize = trainEvalSize
    self.bnExamples = bnExamples
    self.childOptimizerState = maskRun == nil ? nil : "fresh"
  }

  /// The declaration of the instability experiment's hyperparameters (see
  /// ``Experiments/HyperparameterKey``).
  public enum CodingKeys: String, HyperparameterKey {
    case training, bn, points
    case maskRun = "mask_run"
    case maskLevel = "mask_level"
    case randomMask = "random_mask"
    case trainEvalSize = "train_eval_size"
    case bnExamples = "bn_examples"
    case childOptimizerState = "child_optimizer_state"

    public var flagName: String? {
      switch self {
      case .training, .childOptimizerState: return nil
      case .maskRun: return "mask-from"
      case .maskLevel: return "level"
      default: return stringValue.replacingOccurrences(of: "_", with: "-")
      }
    }
    public var help: String {
      switch self {
      case .training: return "The training hyperparameters."
      case .bn: return "Batch norm along the line: recompute (statistics re-estimated at every point) or interpolate."
      case .points: return "Points on the line, endpoints included."
      case .maskRun: return "A lottery run folder whose mask to use (with --level); its folder name is hashed."
      case .maskLevel: return "The lottery level whose mask to use."
      case .randomMask: return "A random mask with the per-tensor counts of --mask-from's level."
      case .trainEvalSize: return "Training examples evaluated at every point (a fixed subset)."
      case .bnExamples: return "Training examples used to re-estimate batch-norm statistics (--bn recompute)."
      case .childOptimizerState:
        return "How a subnetwork's children start: fresh, a new optimizer at k (as a lottery level rewound to k)."
      }
    }
    public var defaultSource: DefaultSource {
      switch self {
      case .training: return .derived("their own keys")
      case .bn: return .value(BatchNormMode.recompute.rawValue)
      case .points: return .value("30")
      case .maskRun, .maskLevel: return .derived("none: the dense network")
      case .randomMask: return .value("false")
      case .trainEvalSize: return .value("10000")
      case .bnExamples: return .value("2000")
      case .childOptimizerState: return .derived("fresh with --mask-from; the parent's state for the dense network")
      }
    }
  }
}

/// Runs instability experiments: `lmc_<hash>/replicate_R/spawn_<k>/{parent, child_<c>,
/// interpolation.json, interpolation.csv}`.
///
/// - The parent trains the dense network from initialisation (the seeds of a lottery run's
///   level 0) to step k; its `checkpoint.safetensors` is the full state at k (weights,
///   batch-norm statistics, optimizer state).
/// - Child c starts from that checkpoint (with the mask applied to weights and optimizer
///   state, for a subnetwork) and trains k..T with data-order and augmentation seeds from
///   (seed, replicate, k, child): the same run from k with another data order.
/// - Every pair of children is interpolated (``Interpolation``).
public final class LMCRunner: Experiment {
  public let hparams: LMCHParams
  public let setup: RunSetup
  public let root: String
  public let output: String
  public let progress: ProgressStyle
  let maskDir: String?
  /// The mask run's rewind step: a subnetwork is analysed at the step IMP rewound it to.
  let maskRewindStep: String?
  private let phases: PhaseRunner
  private var lock: FileLock?

  /// `maskFrom`: the lottery run folder for `--mask-from` (checked to exist).
  public init(_ h: LMCHParams, maskFrom: String?, dataDir: String?, output: String, progress: ProgressStyle)
    throws
  {
    hparams = h
    self.output = output
    self.progress = progress
    setup = try RunSetup(h.training, dataDir: dataDir)
    phases = PhaseRunner(setup: setup, progress: progress)
    if let maskFrom {
      guard FileManager.default.fileExists(atPath: RunFile.hparams.path(in: maskFrom)) else {
        throw RunError("--mask-from \(maskFrom): not a lottery run folder (no \(RunFile.hparams.rawValue))")
      }
      maskDir = maskFrom
      // The premise of a subnetwork's instability: its mask comes from IMP with the same
      // training (rewound to the spawn step, checked in validate(spawnSteps:copies:)).
      guard let stored = JSONValue.parse(try AtomicFile.read(RunFile.hparams.path(in: maskFrom)))?["hparams"],
        let lottery = try? stored.decode(LotteryHParams.self)
      else { throw RunError("--mask-from \(maskFrom): its \(RunFile.hparams.rawValue) is not a lottery run's") }
      if lottery.training != h.training {
        let a = (try? JSONValue(encoding: lottery.training).object) ?? [:]
        let b = (try? JSONValue(encoding: h.training).object) ?? [:]
        let keys = Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
        throw LMCHParams.CodingKeys.maskRun.invalid(
          "\(maskFrom) trained with other hyperparameters (\(keys.joined(separator: ", "))); a subnetwork's instability is measured with the training that found it"
        )
      }
      maskRewindStep = lottery.rewindStep
    } else {
      maskRewindStep = nil
      maskDir = nil
    }
    root = RunLayout.root(.lmc, output: output, hash: h.hash)
  }

  public func spawnDir(_ r: Int, _ k: Int) -> String { Self.spawnDir(root, r, k) }
  public static func spawnDir(_ root: String, _ r: Int, _ k: Int) -> String {
    RunLayout.spawn(RunLayout.replicate(root, r), String(k))
  }

  /// Checks spawn steps against the training length.
  public func validate(spawnSteps: [Int], copies: Int) throws {
    guard copies >= 2 else { throw SettingError("copies", "must be at least 2, got \(copies)") }
    for k in spawnSteps where k >= setup.totalSteps || k < 0 {
      throw EngineError("spawn step \(k) is not before the end of training (\(setup.totalSteps) iterations)")
    }
    if let rewind = maskRewindStep {
      let k0 = try rewindIterations(rewind, perEpoch: setup.iterationsPerEpoch, total: setup.totalSteps)
      if let k = spawnSteps.first(where: { $0 != k0 }) {
        throw SettingError(
          "spawn_steps",
          "\(k) differs from the step the mask run rewound to (\(rewind) = \(k0) iterations): a subnetwork is analysed where IMP rewound it (run lth lottery with --rewind-step \(k)it for that k)"
        )
      }
    }
  }

  /// The mask of replicate `r` (nil: dense): the lottery level's, or a random one with its
  /// per-tensor counts. The lottery level must be finished.
  public func mask(replicate r: Int) throws -> Mask? {
    guard let dir = maskDir, let level = hparams.maskLevel else { return nil }
    let levelDir = "\(dir)/replicate_\(r)/level_\(level)/main"
    guard FileManager.default.fileExists(atPath: RunFile.summary.path(in: levelDir)) else {
      throw RunError("--mask-from: level \(level) of replicate \(r) is unfinished or missing in \(dir)")
    }
    let m = try Mask.load(RunFile.mask.path(in: levelDir), for: try setup.makeNetwork(seed: 0))
    guard hparams.randomMask else { return m }
    let seed = derivedSeed(hparams.training.seed, purpose: "lmc-random-mask", replicate: r, level: level)
    return RandomPruner.like(m, layout: .layerwise, seed: seed)
  }

  @discardableResult
  public func open() throws -> Bool {
    let (l, existed) = try RunStore.openExperiment(
      output: output, root: root, hparamsJSON: hparams.canonicalJSON(), kind: "lmc",
      convBackends: try setup.plannedConvBackends())
    lock = l
    return existed
  }

  /// Releases the experiment folder's lock once the command has recorded itself.
  public func releaseRoot() { lock = nil }

  public func checkMachine(command: String = "lmc", requireSameCPU: Bool) throws {
    try MachineCheck.check(
      runDir: root, command: command, convBackends: try setup.plannedConvBackends(),
      requireSameCPU: requireSameCPU)
  }

  public func hasUnfinished(replicates: [Int], spawnSteps: [Int]) -> Bool {
    replicates.contains { r in
      spawnSteps.contains { !FileManager.default.fileExists(atPath: RunFile.interpolation.path(in: spawnDir(r, $0))) }
    }
  }

  /// What the parent of (replicate, k) depends on: training only (not the mask, batch-norm
  /// mode or evaluation sizes), so runs that differ only there share it.
  public func parentKey(replicate r: Int, spawn k: Int) -> String {
    RunHash.short(hparams.training.canonicalJSON() + "|lmc-parent|replicate=\(r)|k=\(k)")
  }

  /// Copies a finished parent with the same key from another `lmc_*` run, if any (the
  /// checkpoint and summary last, so a kill leaves a folder that trains from scratch).
  func adoptParent(key: String, replicate r: Int, spawn k: Int, into dir: String) throws -> Bool {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
    for e in entries.sorted() where RunLayout.kind(ofFolder: e) == .lmc && output + "/" + e != root {
      let src = "\(output)/\(e)/replicate_\(r)/spawn_\(k)/parent"
      guard let other = try? String(contentsOfFile: src + "/parent_key", encoding: .utf8), other == key,
        var summary = try TrainSummary.read(in: src)
      else { continue }
      for f: RunFile in [.metrics, .metricsCSV, .modelStart, .modelFinal, .provenance, .checkpoint]
      where FileManager.default.fileExists(atPath: f.path(in: src)) {
        try AtomicFile.write(try AtomicFile.read(f.path(in: src)), to: f.path(in: dir))
      }
      summary.runDir = dir
      try summary.write(in: dir)
      return true
    }
    return false
  }

  /// The child's data-order seed: (data seed, replicate, k, child).
  public func childDataSeed(replicate r: Int, spawn k: Int, child c: Int) -> UInt64 {
    derivedSeed(
      hparams.training.dataOrderSeed, purpose: "lmc-child-data", replicate: r, level: k, branch: "child_\(c)")
  }

  /// Runs spawn step `k` of replicate `r`: parent, `copies` children, interpolations.
  public func run(replicate r: Int, spawn k: Int, copies: Int) throws {
    let dir = spawnDir(r, k)
    try phases.makeDir(dir)
    let phaseLock = try RunStore.phaseLock(dir)
    defer { withExtendedLifetime(phaseLock) {} }
    let initSeed = replicateSeed(hparams.training.seed, r)
    let dataSeed = replicateSeed(hparams.training.dataOrderSeed, r, purpose: "replicate-data")
    let schedule = setup.schedule
    let T = setup.totalSteps
    let mask = try self.mask(replicate: r)
    let probe = try setup.makeNetwork(seed: initSeed)
    // Parent: dense, 0..k; reused from another lmc run with the same training.
    let parent = dir + "/parent"
    try phases.makeDir(parent)
    let key = parentKey(replicate: r, spawn: k)
    try AtomicFile.write(key, to: parent + "/parent_key")
    if try TrainSummary.read(in: parent) == nil,
      try adoptParent(key: key, replicate: r, spawn: k, into: parent)
    {
      if progress != .quiet {
        print("replicate \(r) spawn \(k): parent reused from an lmc run with the same training")
      }
    }
    if progress != .quiet, try TrainSummary.read(in: parent) == nil {
      print("replicate \(r) spawn \(k): parent, \(k) steps")
    }
    _ = try phases.train(
      dir: parent, mask: Mask(ones: probe), initSeed: initSeed, dataSeed: dataSeed, initialState: nil,
      firstStep: 0, lastStep: k, lr: { schedule($0) })
    // Children: from the parent's full checkpoint at k, other data orders.
    for c in 1...copies {
      let child = "\(dir)/child_\(c)"
      try phases.makeDir(child)
      if try TrainSummary.read(in: child) != nil { continue }
      let checkpoint = RunFile.checkpoint.path(in: child)
      if !FileManager.default.fileExists(atPath: checkpoint) {
        let net = try setup.makeNetwork(seed: initSeed)
        let opt = try setup.makeOptimizer(net)
        let step = try Checkpoint.load(network: net, optimizer: opt, from: RunFile.checkpoint.path(in: parent))
        guard step == k else {
          throw RunError("\(RunFile.checkpoint.path(in: parent)) is at step \(step), expected \(k)")
        }
        var childOptimizer = opt
        if let mask {
          try mask.apply(to: net)
          if hparams.childOptimizerState == "fresh" {
            // As a lottery level rewound to k: the weights at k, a new optimizer.
            childOptimizer = try setup.makeOptimizer(net)
          } else {
            for (name, state) in opt.namedState {
              // Optimizer state tensors are named `<param>.<state>`; zero pruned entries.
              guard let dot = name.lastIndex(of: "."), let m = mask.values[String(name[..<dot])],
                m.count == state.count
              else { continue }
              for i in 0..<m.count where m[i] == 0 { state[i] = 0 }
            }
          }
        }
        try ModelState.save(net, step: k, to: RunFile.modelStart.path(in: child))
        try Checkpoint.save(network: net, optimizer: childOptimizer, step: k, to: checkpoint)
      }
      if progress != .quiet { print("replicate \(r) spawn \(k): child \(c), steps \(k)..\(T)") }
      _ = try phases.train(
        dir: child, mask: mask ?? Mask(ones: probe), initSeed: initSeed,
        dataSeed: childDataSeed(replicate: r, spawn: k, child: c), initialState: nil, firstStep: k,
        lastStep: T,
        lr: { schedule($0) })
    }
    // Interpolations of every pair.
    guard !FileManager.default.fileExists(atPath: RunFile.interpolation.path(in: dir)) else { return }
    if progress != .quiet {
      print("replicate \(r) spawn \(k): interpolating \(copies * (copies - 1) / 2) pair(s)")
    }
    let net = try setup.makeNetwork(seed: initSeed)
    let trainIdx = Interpolation.trainSubset(
      count: setup.train.count, size: hparams.trainEvalSize, seed: hparams.training.seed)
    var pairs: [CurveRecord] = []
    var csv = "k,replicate,pair,alpha,split,error,loss\n"
    for c1 in 1...copies {
      for c2 in (c1 + 1)...max(c1 + 1, copies) where c2 <= copies {
        let a = try setup.makeNetwork(seed: initSeed)
        let b = try setup.makeNetwork(seed: initSeed)
        try ModelState.load(a, from: RunFile.modelFinal.path(in: "\(dir)/child_\(c1)"))
        try ModelState.load(b, from: RunFile.modelFinal.path(in: "\(dir)/child_\(c2)"))
        let ip = try Interpolation(net: net, a: a, b: b, mask: mask)
        let curve = try ip.curve(
          points: hparams.points, bn: hparams.bn, test: setup.test, train: setup.train,
          trainIndices: trainIdx,
          bnExamples: hparams.bnExamples)
        pairs.append(curve.record(pair: "\(c1)-\(c2)", replicate: r, k: k))
        for (i, alpha) in curve.alpha.enumerated() {
          csv += "\(k),\(r),\(c1)-\(c2),\(alpha),test,\(curve.testError[i]),\(curve.testLoss[i])\n"
          csv += "\(k),\(r),\(c1)-\(c2),\(alpha),train,\(curve.trainError[i]),\(curve.trainLoss[i])\n"
        }
      }
    }
    try AtomicFile.write(csv, to: RunFile.interpolationCSV.path(in: dir))
    // interpolation.json last: its presence marks the spawn step as finished.
    try RunStore.writeJSON(
      InterpolationFile(k: k, replicate: r, bn: hparams.bn.rawValue, curves: pairs),
      to: RunFile.interpolation.path(in: dir))
  }
}

/// `interpolation.json` of a spawn step: every pair's curve.
public struct InterpolationFile: Codable, Equatable, Sendable {
  public var k: Int
  public var replicate: Int
  public var bn: String
  public var curves: [CurveRecord]
}

/// An instability experiment: every (replicate, spawn step), independent of each other.
public struct LMCPlan: ExperimentPlan {
  public let hparams: LMCHParams
  public let output: String
  public let replicates: [Int]
  /// Spawn steps in iterations.
  public let spawnSteps: [Int]
  public let copies: Int

  public init(_ hparams: LMCHParams, output: String, replicates: [Int], spawnSteps: [Int], copies: Int) {
    (self.hparams, self.output, self.replicates, self.spawnSteps, self.copies) =
      (hparams, output, replicates, spawnSteps, copies)
  }

  public var kind: RunLayout.Kind { .lmc }
  public var hyperparameters: any CanonicalJSON & Sendable { hparams }
  public var root: String { RunLayout.root(.lmc, output: output, hash: hparams.hash) }

  public func phases() -> [ExperimentPhase] {
    let root = self.root
    return replicates.flatMap { r in
      spawnSteps.map { k in
        ExperimentPhase(
          id: "r\(r).k\(k)", kind: "spawn", replicate: r, scope: .spawn(k, copies: copies),
          marker: RunFile.interpolation.path(in: LMCRunner.spawnDir(root, r, k)))
      }
    }
  }
}

extension LMCRunner {
  /// Trains one spawn step: parent, children and interpolations (finished parts skipped).
  public func run(_ phase: ExperimentPhase) throws {
    guard case .spawn(let k, let copies) = phase.scope else { throw EngineError("\(phase.id) is not an lmc phase") }
    try run(replicate: phase.replicate, spawn: k, copies: copies)
  }
}
