import Engine
import Foundation
import NN
import Pruning
import Training

/// What every experiment phase (a lottery level, a PaI density, a branch) does the same way:
/// make its folder, decide and record its mask (`sparsity.json` with connectivity, then
/// `mask.safetensors`), and train from given weights over a step range, resumably.
public final class PhaseRunner {
  public let setup: RunSetup
  public let progress: ProgressStyle
  private var probe: Network<Float>?
  private var scratch: Network<Double>?

  public init(setup: RunSetup, progress: ProgressStyle) {
    self.setup = setup
    self.progress = progress
  }

  /// A network of the architecture (its weights are not used).
  func probeNetwork() throws -> Network<Float> {
    if let probe { return probe }
    let p = try setup.makeNetwork(seed: 0)
    probe = p
    return p
  }

  /// Creates `d`. Temporary files a killed writer left are removed by the phase's lock
  /// (``RunStore/phaseLock(_:)``), never here: another process may be writing them.
  public func makeDir(_ d: String) throws {
    try RunStore.makeDirectory(d)
  }

  /// Connectivity of `mask` on this architecture (``Pruning/Connectivity``).
  public func connectivity(_ mask: Mask) throws -> Connectivity {
    if scratch == nil { scratch = try setup.makeNetwork(seed: 0, as: Double.self) }
    return try Connectivity.analyze(mask, scratch: scratch!)
  }

  /// Writes `sparsity.json` (with connectivity), then `mask.safetensors`, whose presence
  /// marks the mask as decided: a kill between the two leaves no mask, and the rerun decides
  /// it again.
  public func writeMask(_ m: Mask, _ dir: String, connectivity: Connectivity?) throws {
    let c = try connectivity ?? self.connectivity(m)
    try AtomicFile.write(m.sparsityJSON(connectivity: c), to: RunFile.sparsity.path(in: dir))
    try m.save(to: RunFile.mask.path(in: dir))
  }

  /// Loads a decided mask, restoring `sparsity.json` if it is missing (a folder written by
  /// a version that saved the mask first and was killed in between).
  public func loadMask(_ path: String) throws -> Mask {
    let m = try Mask.load(path, for: try probeNetwork())
    let sparsity = RunFile.sparsity.path(in: (path as NSString).deletingLastPathComponent)
    if !FileManager.default.fileExists(atPath: sparsity) {
      try AtomicFile.write(m.sparsityJSON(connectivity: try connectivity(m)), to: sparsity)
    }
    return m
  }

  /// Trains one phase into `dir` unless its `summary.json` exists (then returns it).
  public func train(
    dir: String, mask: Mask, setup: RunSetup? = nil, initSeed: UInt64, dataSeed: UInt64,
    initialState: String?,
    firstStep: Int, lastStep: Int, lr: @escaping (Int) -> Double, saveStates: [(step: Int, path: String)] = []
  ) throws -> TrainSummary {
    if let s = try TrainSummary.read(in: dir) { return s }
    let setup = setup ?? self.setup
    let started = Date()
    // A phase's record of the machine that trains it (branches have it in hparams.json).
    let fm = FileManager.default
    if !fm.fileExists(atPath: RunFile.hparams.path(in: dir)) && !fm.fileExists(atPath: RunFile.provenance.path(in: dir)) {
      let p = try Provenance.current(convBackends: try setup.plannedConvBackends()).jsonObject()
      try RunStore.writeJSON(JSONValue.object(["provenance": .object(p)]), to: RunFile.provenance.path(in: dir))
    }
    let algorithms = try setup.hparams.algorithmCallbacks()
    let net = try Trainer.initialize(network: try setup.makeNetwork(seed: initSeed), callbacks: algorithms)
    if let initialState { try ModelState.load(net, from: initialState) }
    try mask.apply(to: net)
    let trainer = try Trainer(
      network: net, optimizer: try setup.makeOptimizer(net), loader: try setup.makeLoader(seed: dataSeed),
      evalSets: setup.evalSets, firstStep: firstStep, lastStep: lastStep, evalEvery: setup.evalEvery,
      learningRate: lr, directory: dir, progress: progress)
    trainer.callbacks = algorithms
    trainer.splitEvery = setup.splitEvery
    trainer.saveStates = saveStates + [(firstStep, RunFile.modelStart.path(in: dir))]
    let records = try trainer.run()
    try ModelState.save(net, step: lastStep, to: RunFile.modelFinal.path(in: dir))
    let summary = try TrainSummary.from(
      records, runDir: dir, steps: lastStep - firstStep, seconds: Date().timeIntervalSince(started),
      network: net
    ).with(trainer)
    try summary.write(in: dir)
    return summary
  }
}
