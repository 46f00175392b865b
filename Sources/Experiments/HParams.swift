/// # Experiments: hyperparameters, the run store and runners
///
/// ``TrainingHParams`` is the full, resolved description of one training run (every
/// default filled in from the model's ``NN/Recipe``). Its hash names the run folder
/// (`train_<hash>`), so a changed default can never silently reuse an old run; the folder's
/// `hparams.json` also records the LotteryKit version, the git commit embedded at build time
/// (and whether the tree was dirty), the CPU, the ISA oneDNN dispatches to, the BLAS library
/// and the thread count (``Provenance``). The hash is SHA-256 over ``CanonicalEncoder`` text
/// (see Canonical.swift); folders named by the older FNV hash are migrated on first use. ``RunStore`` makes and
/// locks run folders; ``TrainRunner`` resolves, trains, resumes and summarises.
import Datasets
import Engine
import Families
import Foundation
import NN

/// Every hyperparameter of a training run, resolved. Output, quiet, json and thread flags
/// are not hyperparameters and are not hashed.
public struct TrainingHParams: Codable, Equatable, Sendable, CanonicalJSON {
  public var model: String
  public var dataset: String
  public var trainingSteps: String
  public var batchSize: Int
  public var optimizer: String
  public var lr: Double
  public var momentum: Double
  public var nesterov: Bool
  public var weightDecay: Double
  public var schedule: String
  public var warmupSteps: String
  public var milestones: [String]
  public var gamma: Double
  public var initializer: String
  public var batchNormInit: String
  public var seed: UInt64
  public var dataOrderSeed: UInt64
  public var augment: Bool
  public var validationSize: Int
  public var subsampleFraction: Double
  public var randomLabelsFraction: Double
  public var evalEvery: String
  public var evalTrain: Bool
  /// Convolution backends (``Engine/ConvBackendPolicy``): absent means `auto`, so the hash
  /// of an `auto` run is what it was before the field existed. Backends round differently,
  /// so another choice is another run.
  public var convBackend: String? = nil
  /// Sparse kernels for pruned layers (``NN/SparseKernelPolicy``): absent means `auto`, as
  /// for ``convBackend``; `on` and `off` round differently, so they are other runs.
  public var sparseKernels: String? = nil

  enum CodingKeys: String, CodingKey {
    case model, dataset, optimizer, lr, momentum, nesterov, schedule, milestones, gamma, seed, augment,
      initializer
    case trainingSteps = "training_steps"
    case batchSize = "batch_size"
    case weightDecay = "weight_decay"
    case warmupSteps = "warmup_steps"
    case batchNormInit = "batch_norm_init"
    case dataOrderSeed = "data_order_seed"
    case validationSize = "validation_size"
    case subsampleFraction = "subsample_fraction"
    case randomLabelsFraction = "random_labels_fraction"
    case evalEvery = "eval_every"
    case evalTrain = "eval_train"
    case convBackend = "conv_backend"
    case sparseKernels = "sparse_kernels"
  }

}

/// Hyperparameter groups are hashed over their canonical JSON (``CanonicalEncoder``).
public protocol CanonicalJSON: Encodable {}

extension CanonicalJSON {
  /// Canonical JSON (sorted keys, fixed number and string formatting): what the hash covers.
  /// Values are validated before hashing, so encoding cannot fail (only NaN or infinity could).
  public func canonicalJSON() -> String { try! CanonicalEncoder().encode(self) }

  /// Folder hash: the first 16 hex digits of SHA-256 over the canonical JSON.
  public var hash: String { RunHash.short(canonicalJSON()) }

  /// All 64 hex digits of SHA-256 over the canonical JSON (recorded in `hparams.json`).
  public var fullHash: String { RunHash.sha256(canonicalJSON()) }

  /// JSONEncoder's text (sorted keys): what the pre-SHA-256 hash covered.
  public func legacyJSON() -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return String(decoding: try! e.encode(self), as: UTF8.self)
  }

  /// The folder hash of LotteryKit builds before SHA-256: FNV-1a-64 over ``legacyJSON()``.
  /// Used only to find and migrate run folders made by them.
  public var legacyHash: String { RunHash.legacyFNV(legacyJSON()) }
}

/// Command-line overrides of a recipe (nil: the recipe's value).
public struct TrainingOverrides: Sendable {
  public var dataset: String?
  public var trainingSteps: String?
  public var batchSize: Int?
  public var optimizer: String?
  public var lr: Double?
  public var momentum: Double?
  public var nesterov = false
  public var weightDecay: Double?
  public var schedule: String?
  public var warmupSteps: String?
  public var milestones: [String]?
  public var gamma: Double?
  public var initializer: String?
  public var seed: UInt64 = 0
  public var dataOrderSeed: UInt64?
  public var augment: Bool?
  public var validationSize = 0
  public var subsampleFraction = 1.0
  public var randomLabelsFraction = 0.0
  public var evalEvery: String?
  public var evalTrain = false
  public var convBackend: String?
  public var sparseKernels: String?
  public init() {}
}

extension TrainingHParams {
  /// Fills every field from the model's recipe and the overrides, and checks the values.
  public static func resolve(model: String, _ o: TrainingOverrides) throws -> TrainingHParams {
    let r = try Recipe.forModel(model)
    let dataset = try o.dataset ?? ModelZoo.family(of: model).defaultDataset
    _ = try DatasetCatalog.info(dataset)
    let schedule = o.schedule ?? r.schedule.rawValue
    let h = TrainingHParams(
      model: model, dataset: dataset, trainingSteps: o.trainingSteps ?? r.trainingSteps.description,
      batchSize: o.batchSize ?? r.batchSize, optimizer: o.optimizer ?? r.optimizer.rawValue,
      lr: o.lr ?? r.learningRate, momentum: o.momentum ?? r.momentum, nesterov: o.nesterov,
      weightDecay: o.weightDecay ?? r.weightDecay, schedule: schedule, warmupSteps: o.warmupSteps ?? "0it",
      milestones: o.milestones ?? (schedule == "step" ? r.milestones.map(\.description) : []),
      gamma: o.gamma ?? r.gamma, initializer: o.initializer ?? r.initializer.rawValue,
      batchNormInit: r.batchNormInit.rawValue, seed: o.seed, dataOrderSeed: o.dataOrderSeed ?? o.seed,
      augment: o.augment ?? DatasetCatalog.augmentsByDefault(dataset), validationSize: o.validationSize,
      subsampleFraction: o.subsampleFraction, randomLabelsFraction: o.randomLabelsFraction,
      evalEvery: o.evalEvery ?? "1ep", evalTrain: o.evalTrain,
      convBackend: o.convBackend == "auto" ? nil : o.convBackend,
      sparseKernels: o.sparseKernels == "auto" ? nil : o.sparseKernels)
    try h.validate()
    return h
  }

  /// Checks every value; errors name the flag.
  public func validate() throws {
    func need(_ ok: Bool, _ msg: String) throws { if !ok { throw EngineError(msg) } }
    try need(batchSize > 0, "--batch-size must be positive, got \(batchSize)")
    try need(lr > 0 && lr.isFinite, "--lr must be positive, got \(lr)")
    try need(momentum >= 0 && momentum < 1, "--momentum must be in [0, 1), got \(momentum)")
    try need(
      weightDecay >= 0 && weightDecay.isFinite, "--weight-decay must be non-negative, got \(weightDecay)")
    try need(gamma > 0 && gamma.isFinite, "--gamma must be positive, got \(gamma)")
    try need(
      subsampleFraction > 0 && subsampleFraction <= 1,
      "--subsample-fraction must be in (0, 1], got \(subsampleFraction)")
    try need(
      randomLabelsFraction >= 0 && randomLabelsFraction <= 1,
      "--random-labels-fraction must be in [0, 1], got \(randomLabelsFraction)")
    try need(["sgd", "adam"].contains(optimizer), "--optimizer must be sgd or adam, got \(optimizer)")
    try need(
      !nesterov || (optimizer == "sgd" && momentum > 0), "--nesterov needs --optimizer sgd and --momentum > 0"
    )
    try need(
      LearningRateSchedule.Kind(rawValue: schedule) != nil,
      "--schedule must be constant, step or cosine, got \(schedule)")
    try need(
      Initializer(rawValue: initializer) != nil,
      "--initializer must be one of \(Initializer.allCases.map(\.rawValue).joined(separator: ", ")), got \(initializer)"
    )
    try need(
      convBackend.map { ConvBackendPolicy(rawValue: $0) != nil } ?? true,
      "--conv-backend must be one of \(ConvBackendPolicy.allCases.map(\.rawValue).joined(separator: ", ")), got \(convBackend ?? "")"
    )
    try need(
      sparseKernels.map { SparseKernelPolicy(rawValue: $0) != nil } ?? true,
      "--sparse-kernels must be one of \(SparseKernelPolicy.allCases.map(\.rawValue).joined(separator: ", ")), got \(sparseKernels ?? "")"
    )
    for s in [trainingSteps, warmupSteps, evalEvery] + milestones { _ = try StepSpec(parsing: s) }
    try need(try StepSpec(parsing: evalEvery) != StepSpec(), "--eval-every must be positive")
  }
}
