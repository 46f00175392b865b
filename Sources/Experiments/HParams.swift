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
import Training

/// Every hyperparameter of a training run, resolved. Output, quiet, json and thread flags
/// are not hyperparameters and are not hashed.
public struct TrainingHParams: Codable, Equatable, Sendable, CanonicalJSON {
  public var model: String
  public var dataset: String
  public var trainingSteps: String
  public var batchSize: Int
  public var optimizer: Recipe.OptimizerKind
  public var lr: Double
  public var momentum: Double
  public var nesterov: Bool
  public var weightDecay: Double
  public var schedule: LearningRateSchedule.Kind
  public var warmupSteps: String
  public var milestones: [String]
  public var gamma: Double
  public var initializer: Initializer
  public var batchNormInit: BatchNormInit
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
  public var convBackend: ConvBackendPolicy? = nil
  /// Sparse kernels for pruned layers (``NN/SparseKernelPolicy``): absent means `auto`, as
  /// for ``convBackend``; `on` and `off` round differently, so they are other runs.
  public var sparseKernels: SparseKernelPolicy? = nil
  /// Speed-up methods (``Training/Algorithms``), each as `name:key=value;...` with every
  /// parameter written out: absent when there are none, so runs without them keep their
  /// hash; in the hash otherwise (another method or value is another run).
  public var algorithms: [String]? = nil
  /// How often the test set is evaluated (a step spec): absent means with ``evalEvery``, so
  /// runs that never set it keep their hash. Studies that select on validation data
  /// (`lth speedup`) evaluate the test set only at the start and the end.
  public var testEvalEvery: String? = nil

  /// The declaration of every training hyperparameter (see ``HyperparameterKey``): JSON
  /// key, flag, help and default.
  public enum CodingKeys: String, HyperparameterKey {
    case model, dataset
    case trainingSteps = "training_steps"
    case batchSize = "batch_size"
    case optimizer, lr, momentum, nesterov
    case weightDecay = "weight_decay"
    case schedule
    case warmupSteps = "warmup_steps"
    case milestones, gamma, initializer
    case batchNormInit = "batch_norm_init"
    case seed
    case dataOrderSeed = "data_order_seed"
    case augment
    case validationSize = "validation_size"
    case subsampleFraction = "subsample_fraction"
    case randomLabelsFraction = "random_labels_fraction"
    case evalEvery = "eval_every"
    case evalTrain = "eval_train"
    case convBackend = "conv_backend"
    case sparseKernels = "sparse_kernels"
    case algorithms
    case testEvalEvery = "test_eval_every"

    public var help: String {
      switch self {
      case .model:
        return "Model name, e.g. mnist_lenet_300_100, cifar_conv_2, cifar_resnet_20 (see `lth models`)."
      case .dataset: return "Data set: \(DatasetCatalog.names.joined(separator: ", "))."
      case .trainingSteps: return "Training length: 2000it, 2ep or 1ep500it."
      case .batchSize: return "Batch size."
      case .optimizer: return "Optimizer."
      case .lr: return "Learning rate (peak, after warm-up)."
      case .momentum: return "SGD momentum."
      case .nesterov: return "Nesterov momentum (SGD)."
      case .weightDecay: return "Weight decay (L2 added to the gradient)."
      case .schedule: return "Schedule after warm-up."
      case .warmupSteps: return "Linear warm-up length, e.g. 1ep."
      case .milestones: return "Step-decay milestones, comma separated, e.g. 80ep,120ep."
      case .gamma: return "Step-decay factor."
      case .initializer: return "Weight initialiser."
      case .batchNormInit: return "Batch-norm scale initialiser."
      case .seed: return "Seed for initialisation (and data order unless --data-order-seed)."
      case .dataOrderSeed: return "Seed for data order and augmentation."
      case .augment: return "Random-crop and flip augmentation: true or false."
      case .validationSize: return "Examples held out of the training set for validation."
      case .subsampleFraction: return "Fraction of the training set to use, in (0, 1]."
      case .randomLabelsFraction: return "Fraction of training labels replaced by random ones, in [0, 1]."
      case .evalEvery: return "Evaluate every S steps, and at the end."
      case .testEvalEvery:
        return
          "Evaluate the test set only at evaluations whose step is a multiple of S, and at the start and the end (0it: only there)."
      case .evalTrain: return "Also evaluate on the training set."
      case .convBackend:
        return
          "Convolution backends: auto (oneDNN where it has a JIT kernel, Winograd for 3x3 stride-1 layers with >= 32 channels), im2col, or onednn (direct only); any but auto is another run."
      case .sparseKernels:
        return
          "Sparse kernels for pruned layers: auto (by a fixed rule on shape, density, batch and ISA; see docs/sparse-kernels.md), off (dense arithmetic on masked weights), or on (every pruned layer); any but auto is another run."
      case .algorithms:
        return
          "Speed-up methods, e.g. label_smoothing:smoothing=0.1,ema (\(Algorithms.names.joined(separator: ", "))); see docs/guide-speedup.md."
      }
    }

    public var defaultSource: DefaultSource {
      switch self {
      case .model: return .required
      case .dataset: return .derived("the model family's data set")
      case .trainingSteps, .batchSize, .optimizer, .lr, .momentum, .weightDecay, .schedule, .gamma,
        .initializer,
        .batchNormInit:
        return .recipe
      case .milestones: return .derived("the recipe's, for the step schedule")
      case .nesterov, .evalTrain: return .value("false")
      case .warmupSteps: return .value("0it")
      case .seed: return .value("0")
      case .dataOrderSeed: return .derived("--seed")
      case .augment:
        return .derived(
          "the family's recipe: off for Conv-2/4/6 (as the LTH paper), on for CIFAR ResNet and VGG")
      case .validationSize: return .value("0")
      case .subsampleFraction: return .value("1")
      case .randomLabelsFraction: return .value("0")
      case .evalEvery: return .value("1ep")
      case .convBackend, .sparseKernels: return .value("auto")
      case .algorithms: return .value("none")
      case .testEvalEvery: return .derived("--eval-every")
      }
    }
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
  public var optimizer: Recipe.OptimizerKind?
  public var lr: Double?
  public var momentum: Double?
  public var nesterov = false
  public var weightDecay: Double?
  public var schedule: LearningRateSchedule.Kind?
  public var warmupSteps: String?
  public var milestones: [String]?
  public var gamma: Double?
  public var initializer: Initializer?
  public var batchNormInit: BatchNormInit?
  public var seed: UInt64 = 0
  public var dataOrderSeed: UInt64?
  public var augment: Bool?
  public var validationSize = 0
  public var subsampleFraction = 1.0
  public var randomLabelsFraction = 0.0
  public var evalEvery: String?
  public var evalTrain = false
  public var convBackend: ConvBackendPolicy?
  public var sparseKernels: SparseKernelPolicy?
  /// `--algorithms` as given (parsed, checked and written out in full by ``TrainingHParams/resolve(model:_:)``).
  public var algorithms: String?
  /// `--recipe` (``Training/AlgorithmRecipes``): expanded into ``algorithms`` for the model.
  public var recipe: String?
  public var testEvalEvery: String?
  public init() {}
}

extension TrainingHParams {
  /// Fills every field from the model's recipe and the overrides, and checks the values.
  public static func resolve(model: String, _ o: TrainingOverrides) throws -> TrainingHParams {
    let r = try Recipe.forModel(model)
    let dataset = try o.dataset ?? ModelZoo.family(of: model).defaultDataset
    _ = try DatasetCatalog.info(dataset)
    let schedule = o.schedule ?? r.schedule
    let h = TrainingHParams(
      model: model, dataset: dataset, trainingSteps: o.trainingSteps ?? r.trainingSteps.description,
      batchSize: o.batchSize ?? r.batchSize, optimizer: o.optimizer ?? r.optimizer,
      lr: o.lr ?? r.learningRate, momentum: o.momentum ?? r.momentum, nesterov: o.nesterov,
      weightDecay: o.weightDecay ?? r.weightDecay, schedule: schedule, warmupSteps: o.warmupSteps ?? "0it",
      milestones: o.milestones ?? (schedule == .step ? r.milestones.map(\.description) : []),
      gamma: o.gamma ?? r.gamma, initializer: o.initializer ?? r.initializer,
      batchNormInit: o.batchNormInit ?? r.batchNormInit, seed: o.seed,
      dataOrderSeed: o.dataOrderSeed ?? o.seed,
      augment: o.augment ?? r.augment ?? DatasetCatalog.augmentsByDefault(dataset),
      validationSize: o.validationSize,
      subsampleFraction: o.subsampleFraction, randomLabelsFraction: o.randomLabelsFraction,
      evalEvery: o.evalEvery ?? "1ep", evalTrain: o.evalTrain,
      convBackend: o.convBackend == .auto ? nil : o.convBackend,
      sparseKernels: o.sparseKernels == .auto ? nil : o.sparseKernels)
    var out = h
    out.testEvalEvery = o.testEvalEvery
    var specs: [AlgorithmSpec] = []
    if let recipe = o.recipe {
      // The recipe's methods that fit this model; `--algorithms` adds to them or replaces
      // a method's parameters.
      let info = try DatasetCatalog.info(dataset)
      let net = try ModelZoo.make(model, inputShape: info.shape, classes: info.classes)
      let r = try AlgorithmRecipes.expand(recipe, for: net)
      specs = r.kept
      if !r.dropped.isEmpty {
        FileHandle.standardError.write(
          Data(
            "note: --recipe \(recipe) on \(model) leaves out \(r.dropped.map { "\($0.name) (\($0.why))" }.joined(separator: "; "))\n"
              .utf8))
      }
    }
    if let a = o.algorithms {
      for spec in try Algorithms.parse(a) {
        specs.removeAll { $0.name == spec.name }
        specs.append(spec)
      }
    }
    out.algorithms = specs.isEmpty ? nil : specs.map(\.text)
    try out.validate()
    return out
  }

  /// The speed-up methods' callbacks (none when ``algorithms`` is nil).
  public func algorithmCallbacks() throws -> [any TrainingCallback] {
    try Algorithms.callbacks(algorithms ?? [])
  }

  /// Checks every value; a bad one throws the ``Engine/SettingError`` of its key.
  public func validate() throws {
    typealias K = CodingKeys
    func need(_ ok: Bool, _ key: K, _ problem: String) throws { if !ok { throw key.invalid(problem) } }
    try need(batchSize > 0, .batchSize, "must be positive, got \(batchSize)")
    try need(lr > 0 && lr.isFinite, .lr, "must be positive, got \(lr)")
    try need(momentum >= 0 && momentum < 1, .momentum, "must be in [0, 1), got \(momentum)")
    try need(
      weightDecay >= 0 && weightDecay.isFinite, .weightDecay, "must be non-negative, got \(weightDecay)")
    try need(gamma > 0 && gamma.isFinite, .gamma, "must be positive, got \(gamma)")
    try need(
      subsampleFraction > 0 && subsampleFraction <= 1, .subsampleFraction,
      "must be in (0, 1], got \(subsampleFraction)")
    try need(
      randomLabelsFraction >= 0 && randomLabelsFraction <= 1, .randomLabelsFraction,
      "must be in [0, 1], got \(randomLabelsFraction)")
    try need(
      !nesterov || (optimizer == .sgd && momentum > 0), .nesterov, "needs --optimizer sgd and --momentum > 0")
    for (key, s) in [
      (K.trainingSteps, trainingSteps), (.warmupSteps, warmupSteps), (.evalEvery, evalEvery),
      (.testEvalEvery, testEvalEvery ?? evalEvery),
    ]
      + milestones.map({ (K.milestones, $0) })
    {
      do { _ = try StepSpec(parsing: s) } catch { throw key.invalid("\(error)") }
    }
    try need(try StepSpec(parsing: evalEvery) != StepSpec(), .evalEvery, "must be positive")
  }
}
