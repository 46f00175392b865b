import Datasets
import Engine
import Families
import Foundation
import NN
import Training

/// Data, model and optimizer for one set of hyperparameters (shared by `lth train` and the
/// lottery runner, which trains many levels on the same data).
public final class RunSetup {
  public let hparams: TrainingHParams
  public let train: Dataset
  public let validation: Dataset?
  public let test: Dataset
  public let iterationsPerEpoch: Int
  public let totalSteps: Int
  public let evalEvery: Int
  /// The test set's interval (``TrainingHParams/testEvalEvery``; nil: with the others).
  public let testEvalEvery: Int?
  /// ``Training/Trainer/splitEvery`` for this run's trainers.
  public var splitEvery: [String: Int] { testEvalEvery.map { ["test": $0] } ?? [:] }
  public let schedule: LearningRateSchedule

  public init(_ h: TrainingHParams, dataDir: String?) throws {
    hparams = h
    let native = ModelZoo.nativeInputShape(h.model)
    let (fullTrain, test) = try DatasetCatalog.load(h.dataset, dataDir: dataDir, syntheticShape: native)
    let splits = Splits(
      validationSize: h.validationSize, subsampleFraction: h.subsampleFraction,
      randomLabelsFraction: h.randomLabelsFraction)
    (train, validation) = try splits.apply(to: fullTrain)
    self.test = test
    iterationsPerEpoch = (train.count + h.batchSize - 1) / h.batchSize
    totalSteps = try StepSpec(parsing: h.trainingSteps).iterations(perEpoch: iterationsPerEpoch)
    guard totalSteps > 0 else {
      throw SettingError("training_steps", "must be positive, got \(h.trainingSteps)")
    }
    evalEvery = try StepSpec(parsing: h.evalEvery).iterations(perEpoch: iterationsPerEpoch)
    guard evalEvery > 0 else { throw SettingError("eval_every", "must be positive, got \(h.evalEvery)") }
    let perEpoch = iterationsPerEpoch
    testEvalEvery = try h.testEvalEvery.map { try StepSpec(parsing: $0).iterations(perEpoch: perEpoch) }
    let ipe = iterationsPerEpoch
    let milestones = try h.milestones.map { try StepSpec(parsing: $0).iterations(perEpoch: ipe) }
    schedule = try LearningRateSchedule(
      base: h.lr, kind: h.schedule, milestones: milestones,
      gamma: h.gamma,
      warmupSteps: try StepSpec(parsing: h.warmupSteps).iterations(perEpoch: iterationsPerEpoch),
      totalSteps: totalSteps)
  }

  private var plannedBackends: [String: String]?? = nil

  /// The backend each convolution layer will use (planned by one forward pass of a zero
  /// example through a throwaway network: the choice depends on the layer's geometry,
  /// input size, policy and machine, not on the batch); nil for models without convolutions.
  public func plannedConvBackends() throws -> [String: String]? {
    if let p = plannedBackends { return p }
    let net = try makeNetwork(seed: 0)
    var result: [String: String]? = nil
    if !net.convolutions.isEmpty {
      net.setTraining(false)
      _ = try net.forward(Tensor<Float>(zeros: [1] + train.shape))
      result = net.convolutionBackendNames
    }
    plannedBackends = .some(result)
    return result
  }

  /// Splits evaluated during training: test, validation (when held out), train (when asked).
  public var evalSets: [(String, Dataset)] {
    var s: [(String, Dataset)] = [("test", test)]
    if let v = validation { s.append(("validation", v)) }
    if hparams.evalTrain { s.append(("train", train)) }
    return s
  }

  /// The model for this data set's input shape and classes, initialised from `seed`.
  public func makeNetwork(seed: UInt64) throws -> Network<Float> {
    try makeNetwork(seed: seed, as: Float.self)
  }

  /// The network in another precision (Float64 for scoring and connectivity), the same
  /// initial weights up to rounding.
  public func makeNetwork<T: Scalar>(seed: UInt64, as: T.Type) throws -> Network<T> {
    let net: Network<T> = try ModelZoo.make(
      hparams.model, inputShape: train.shape, classes: train.classes, as: T.self)
    net.initialize(
      seed: seed, weights: hparams.initializer,
      batchNorm: hparams.batchNormInit)
    net.convolutionPolicy = hparams.convBackend ?? .auto
    net.sparseKernels = hparams.sparseKernels ?? .auto
    return net
  }

  /// A fresh optimizer over `net`'s parameters.
  public func makeOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float> {
    let h = hparams
    if h.optimizer == .adam {
      return try Adam(net.parameters, learningRate: h.lr, weightDecay: h.weightDecay)
    }
    return try SGD(
      net.parameters, learningRate: h.lr, momentum: h.momentum, nesterov: h.nesterov,
      weightDecay: h.weightDecay)
  }

  public func makeLoader(seed: UInt64? = nil) throws -> BatchLoader {
    try BatchLoader(
      dataset: train, batchSize: hparams.batchSize, seed: seed ?? hparams.dataOrderSeed,
      augment: hparams.augment)
  }
}

/// What `lth train --json` prints and `summary.json` holds.
public struct TrainSummary: Codable, Sendable, Equatable {
  public var runDir: String
  public var testAccuracy: Double
  public var testLoss: Double
  public var validationAccuracy: Double?
  /// The evaluation step of minimum validation loss (nil without a validation split).
  public var earlyStopStep: Int?
  /// Test accuracy at ``earlyStopStep``: the number the LTH paper reports, the iteration
  /// chosen on validation data, never on the test set.
  public var earlyStopTestAccuracy: Double?
  public var steps: Int
  public var seconds: Double
  /// The convolution backend of every convolution layer, e.g. `onednn:jit_wino_4x3:avx512_core`.
  public var convBackends: [String: String]? = nil
  /// The kernels of every pruned layer in training (`sparse-csr`, `sparse-csr+im2col` or
  /// `dense`); absent for a dense network.
  public var sparseKernels: [String: String]? = nil
  /// True when part of the run was trained on another machine (see ``MachineCheck``).
  public var machineChanged: Bool? = nil
  /// Pruned layers that continued on other kernels than the run started with
  /// (``Training/Trainer/sparseKernelChanges``), e.g. `fc_layers.0 dense -> sparse-csr`.
  public var sparseKernelChanges: [String]? = nil
  enum CodingKeys: String, CodingKey {
    case runDir = "run_dir"
    case testAccuracy = "test_accuracy"
    case testLoss = "test_loss"
    case earlyStopTestAccuracy = "early_stop_test_accuracy"
    case validationAccuracy = "validation_accuracy"
    case earlyStopStep = "early_stop_step"
    case steps, seconds
    case convBackends = "conv_backends"
    case sparseKernels = "sparse_kernels"
    case machineChanged = "machine_changed"
    case sparseKernelChanges = "sparse_kernel_changes"
  }

  /// Summarises a run's metrics (early stopping = step of minimum validation loss).
  public static func from(
    _ records: [MetricRecord], runDir: String, steps: Int, seconds: Double, network: Network<Float>
  ) throws -> TrainSummary {
    let test = records.filter { $0.split == "test" }
    guard let last = test.last else { throw RunError("\(runDir): no test metrics recorded") }
    let val = records.filter { $0.split == "validation" }
    let stop = val.min { $0.loss < $1.loss }?.step
    return TrainSummary(
      runDir: runDir, testAccuracy: last.accuracy, testLoss: last.loss, validationAccuracy: val.last?.accuracy,
      earlyStopStep: stop, earlyStopTestAccuracy: stop.flatMap { s in test.last { $0.step == s }?.accuracy },
      steps: steps, seconds: seconds,
      convBackends: network.convolutions.isEmpty ? nil : network.convolutionBackendNames)
  }

  /// The summary with the trainer's kernel record: what the pruned layers trained with, and
  /// any change on resumption.
  public func with(_ trainer: Trainer) -> TrainSummary {
    var s = self
    s.sparseKernels = trainer.sparseKernels
    s.sparseKernelChanges = trainer.sparseKernelChanges.isEmpty ? nil : trainer.sparseKernelChanges
    return s
  }

  /// The `summary.json` of a run folder: nil when the run has not finished.
  public static func read(in dir: String) throws -> TrainSummary? {
    let p = RunFile.summary.path(in: dir)
    guard FileManager.default.fileExists(atPath: p) else { return nil }
    return try decode(AtomicFile.read(p), path: p)
  }

  /// Decodes the contents of a `summary.json`; `path` only names the file in errors.
  public static func decode(_ bytes: [UInt8], path: String) throws -> TrainSummary {
    guard let s = try? JSONDecoder().decode(TrainSummary.self, from: Data(bytes)) else {
      throw RunError("\(path) is unreadable or truncated")
    }
    return s
  }

  /// Writes `summary.json` atomically: the marker of a finished run.
  public func write(in dir: String) throws {
    try AtomicFile.write(jsonLine() + "\n", to: RunFile.summary.path(in: dir))
  }

  public func jsonLine() -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return String(decoding: try! e.encode(self), as: UTF8.self)
  }
}

/// `lth train`: one run in `<output>/train_<hash>`, resumable, locked.
public enum TrainRunner {
  /// Returns the summary and whether the run had already finished before this call.
  /// A run folder named by the old FNV hash is migrated first; continuing a run on another
  /// machine prints one line and records it, or fails with `requireSameCPU`.
  public static func run(
    _ h: TrainingHParams, dataDir: String?, output: String, progress: ProgressStyle,
    requireSameCPU: Bool = false
  ) throws -> (summary: TrainSummary, alreadyDone: Bool) {
    let dir = RunLayout.root(.train, output: output, hash: h.hash)
    try RunStore.makeDirectory(output)
    try RunStore.migrate(from: RunLayout.root(.train, output: output, hash: h.legacyHash), to: dir, hparamsJSON: h.canonicalJSON())
    try RunStore.makeDirectory(dir)
    let lock = try RunStore.lock(dir)
    defer { withExtendedLifetime(lock) {} }
    let existed = try RunStore.storedHParams(dir) != nil
    if existed {
      try RunStore.claim(directory: dir, hparamsJSON: h.canonicalJSON(), kind: "train")
      if var s = try TrainSummary.read(in: dir) {
        s.runDir = dir  // the folder may have been migrated or moved since
        return (s, true)
      }
    }
    let started = Date()
    let setup = try RunSetup(h, dataDir: dataDir)
    let backends = try setup.plannedConvBackends()
    if existed {
      try MachineCheck.check(
        runDir: dir, command: "train", convBackends: backends, requireSameCPU: requireSameCPU)
    } else {
      try RunStore.claim(
        directory: dir, hparamsJSON: h.canonicalJSON(), kind: "train", convBackends: backends)
    }
    let record = try RunStore.recordCommand(dir)
    return try CommandRecord.perform(record) {
      try train(h, setup: setup, dir: dir, started: started, progress: progress)
    }
  }

  static func train(
    _ h: TrainingHParams, setup: RunSetup, dir: String, started: Date, progress: ProgressStyle
  ) throws -> (summary: TrainSummary, alreadyDone: Bool) {
    let algorithms = try h.algorithmCallbacks()
    let net = try Trainer.initialize(network: try setup.makeNetwork(seed: h.seed), callbacks: algorithms)
    let opt = try setup.makeOptimizer(net)
    let trainer = try Trainer(
      network: net, optimizer: opt, loader: try setup.makeLoader(), evalSets: setup.evalSets, firstStep: 0,
      lastStep: setup.totalSteps, evalEvery: setup.evalEvery, learningRate: { setup.schedule($0) },
      directory: dir, progress: progress)
    trainer.callbacks = algorithms
    trainer.splitEvery = setup.splitEvery
    trainer.saveStates = [(0, RunFile.modelInit.path(in: dir))]
    let records = try trainer.run()
    try ModelState.save(net, step: setup.totalSteps, to: RunFile.modelFinal.path(in: dir))
    var summary = try TrainSummary.from(
      records, runDir: dir, steps: setup.totalSteps, seconds: Date().timeIntervalSince(started),
      network: net
    ).with(trainer)
    if try !MachineCheck.entries(in: dir).isEmpty { summary.machineChanged = true }
    try summary.write(in: dir)
    return (summary, false)
  }
}
