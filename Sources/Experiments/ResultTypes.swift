import Foundation
import Training

/// The version of the result schema: every `--json` object and `lth report`'s embedded data
/// carry it as `schema_version`. docs/results-schema.md describes each version; a change
/// that renames or removes a key, or changes a value's meaning, is a new version.
public enum ResultSchema {
  /// 2: `best_test_accuracy` (a maximum over test evaluations, selection on the test set)
  /// replaced by `early_stop_test_accuracy` (test accuracy at the step of minimum
  /// validation loss), per replicate and as a mean and standard deviation per row.
  /// 3: scaling fit statistics over pruned points only, `warnings`, no e_np extrapolation.
  public static let version = 3
}

/// What every result echoes of its run folder: the stored `hparams` and `provenance` of
/// `hparams.json` (as written, so files of older builds round-trip unchanged) and the
/// lines of `commands.jsonl`.
public struct RunRecord: Codable, Equatable, Sendable {
  public var hparams: JSONValue?
  public var provenance: JSONValue?
  public var commands: [JSONValue]

  public init(hparams: JSONValue? = nil, provenance: JSONValue? = nil, commands: [JSONValue] = []) {
    (self.hparams, self.provenance, self.commands) = (hparams, provenance, commands)
  }

  /// The LotteryKit version that made the run.
  public var version: String? { provenance?["lotterykit_version"]?.string }
}

/// One replicate of a row (``ResultRow/perReplicate``).
public struct ReplicateResult: Codable, Equatable, Sendable {
  public var replicate: Int
  /// Fraction of prunable weights kept (`sparsity.json`).
  public var density: Double
  /// Test accuracy at the end of training.
  public var testAccuracy: Double
  public var seconds: Double
  /// The evaluation step of minimum validation loss (nil without a validation split).
  @Nullable public var earlyStopStep: Int?
  /// Test accuracy at ``earlyStopStep``: chosen on validation data, never on the test set.
  @Nullable public var earlyStopTestAccuracy: Double?
  /// Density once weights cut off from the input or output are counted as pruned.
  @Nullable public var effectiveDensity: Double?

  public init(
    replicate: Int, density: Double, testAccuracy: Double, seconds: Double, earlyStopStep: Int? = nil,
    earlyStopTestAccuracy: Double? = nil, effectiveDensity: Double? = nil
  ) {
    (self.replicate, self.density, self.testAccuracy, self.seconds) = (replicate, density, testAccuracy, seconds)
    self.earlyStopStep = earlyStopStep
    self.earlyStopTestAccuracy = earlyStopTestAccuracy
    self.effectiveDensity = effectiveDensity
  }

  enum CodingKeys: String, CodingKey {
    case replicate, density, seconds
    case testAccuracy = "test_accuracy"
    case earlyStopStep = "early_stop_step"
    case earlyStopTestAccuracy = "early_stop_test_accuracy"
    case effectiveDensity = "effective_density"
  }
}

/// A tensor's density, averaged over the replicates that have it.
public struct LayerDensity: Codable, Equatable, Sendable {
  public var name: String
  public var density: Double
  public init(name: String, density: Double) { (self.name, self.density) = (name, density) }
}

/// Test accuracy against step, mean and sample standard deviation over the replicates, at
/// the steps every replicate evaluated.
public struct LearningCurve: Codable, Equatable, Sendable {
  public var step: [Int]
  public var testAccuracyMean: [Double]
  public var testAccuracyStd: [Double?]

  public init(step: [Int] = [], testAccuracyMean: [Double] = [], testAccuracyStd: [Double?] = []) {
    (self.step, self.testAccuracyMean, self.testAccuracyStd) = (step, testAccuracyMean, testAccuracyStd)
  }

  enum CodingKeys: String, CodingKey {
    case step
    case testAccuracyMean = "test_accuracy_mean"
    case testAccuracyStd = "test_accuracy_std"
  }
}

/// One row of a lottery or pruning-at-initialisation result: a level (or target density)
/// of the main line, or one branch there. Means and standard deviations are over the
/// replicates present; nil when none has the value (JSON null).
public struct ResultRow: Codable, Equatable, Sendable {
  /// The IMP level (lottery runs).
  public var level: Int?
  /// The target density (prune-init runs).
  public var targetDensity: Double?
  @Nullable public var density: Double?
  @Nullable public var testAccuracyMean: Double?
  @Nullable public var testAccuracyStd: Double?
  @Nullable public var earlyStopStepMean: Double?
  /// Test accuracy at each replicate's early-stopping step: mean and sample standard
  /// deviation (nil without a validation split).
  @Nullable public var earlyStopTestAccuracyMean: Double?
  @Nullable public var earlyStopTestAccuracyStd: Double?
  public var replicates: Int
  /// Mean effective density when every replicate recorded one.
  @Nullable public var effectiveDensity: Double?
  public var testAccuracyValues: [Double]
  @Nullable public var secondsMean: Double?
  public var perReplicate: [ReplicateResult]
  public var layers: [LayerDensity]
  public var learningCurve: LearningCurve
  /// Main-line rows: the branches at this row by column name (`random-reinit`, or with 8
  /// hash digits when a kind has several).
  public var branches: [String: ResultRow]?
  /// Branch rows: the branch kind and its hyperparameters' hash.
  public var kind: String?
  public var hash: String?

  public init(
    level: Int? = nil, targetDensity: Double? = nil, density: Double? = nil, testAccuracyMean: Double? = nil,
    testAccuracyStd: Double? = nil, earlyStopStepMean: Double? = nil, earlyStopTestAccuracyMean: Double? = nil,
    earlyStopTestAccuracyStd: Double? = nil,
    replicates: Int = 0, effectiveDensity: Double? = nil, testAccuracyValues: [Double] = [],
    secondsMean: Double? = nil, perReplicate: [ReplicateResult] = [], layers: [LayerDensity] = [],
    learningCurve: LearningCurve = LearningCurve(), branches: [String: ResultRow]? = nil, kind: String? = nil,
    hash: String? = nil
  ) {
    self.level = level
    self.targetDensity = targetDensity
    self.density = density
    self.testAccuracyMean = testAccuracyMean
    self.testAccuracyStd = testAccuracyStd
    self.earlyStopStepMean = earlyStopStepMean
    self.earlyStopTestAccuracyMean = earlyStopTestAccuracyMean
    self.earlyStopTestAccuracyStd = earlyStopTestAccuracyStd
    self.replicates = replicates
    self.effectiveDensity = effectiveDensity
    self.testAccuracyValues = testAccuracyValues
    self.secondsMean = secondsMean
    self.perReplicate = perReplicate
    self.layers = layers
    self.learningCurve = learningCurve
    self.branches = branches
    self.kind = kind
    self.hash = hash
  }

  enum CodingKeys: String, CodingKey {
    case level, density, replicates, layers, branches, kind, hash
    case targetDensity = "target_density"
    case testAccuracyMean = "test_accuracy_mean"
    case testAccuracyStd = "test_accuracy_std"
    case earlyStopStepMean = "early_stop_step_mean"
    case earlyStopTestAccuracyMean = "early_stop_test_accuracy_mean"
    case earlyStopTestAccuracyStd = "early_stop_test_accuracy_std"
    case effectiveDensity = "effective_density"
    case testAccuracyValues = "test_accuracy_values"
    case secondsMean = "seconds_mean"
    case perReplicate = "per_replicate"
    case learningCurve = "learning_curve"
  }

  /// The main line's row and then each branch's, by column name.
  public var lines: [(name: String, row: ResultRow)] {
    [("main", self)] + (branches ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
  }
}

/// A phase begun without a result yet (killed, or still running).
public struct UnfinishedPhase: Codable, Equatable, Sendable {
  public var replicate: Int
  /// `main`, a branch's column name (lottery and prune-init runs).
  public var branch: String?
  public var level: Int?
  public var targetDensity: Double?
  /// The spawn step (LMC runs).
  public var k: Int?

  public init(
    replicate: Int, branch: String? = nil, level: Int? = nil, targetDensity: Double? = nil, k: Int? = nil
  ) {
    (self.replicate, self.branch, self.level, self.targetDensity, self.k) =
      (replicate, branch, level, targetDensity, k)
  }

  enum CodingKeys: String, CodingKey {
    case replicate, branch, level, k
    case targetDensity = "target_density"
  }
}

/// `lth results` of a lottery run (`kind` `lottery`, rows under `levels`) or a
/// pruning-at-initialisation run (`kind` `pai`, rows under `densities`).
public struct RunResults: Codable, Equatable, Sendable {
  public var kind: String
  /// `imp` for lottery runs; the scoring method for prune-init runs.
  public var method: String
  /// Prune-init runs: `global`, `layerwise` or `erk`.
  public var allocation: String?
  public var runDir: String
  public var machineChanged: Bool
  /// The entries of `machine_changes.json` (when there are any).
  public var machineChanges: [JSONValue]?
  public var replicatesPresent: [Int]
  public var unfinished: [UnfinishedPhase]
  public var rows: [ResultRow]
  public var record: RunRecord
  public var schemaVersion: Int

  public var isPaI: Bool { kind == "pai" }

  public init(
    kind: String, method: String, allocation: String? = nil, runDir: String, machineChanged: Bool = false,
    machineChanges: [JSONValue]? = nil, replicatesPresent: [Int] = [], unfinished: [UnfinishedPhase] = [],
    rows: [ResultRow] = [], record: RunRecord = RunRecord()
  ) {
    (self.kind, self.method, self.allocation, self.runDir) = (kind, method, allocation, runDir)
    (self.machineChanged, self.machineChanges, self.replicatesPresent) =
      (machineChanged, machineChanges, replicatesPresent)
    (self.unfinished, self.rows, self.record) = (unfinished, rows, record)
    schemaVersion = ResultSchema.version
  }

  enum CodingKeys: String, CodingKey {
    case kind, method, allocation, unfinished, levels, densities, hparams, provenance, commands
    case runDir = "run_dir"
    case machineChanged = "machine_changed"
    case machineChanges = "machine_changes"
    case replicatesPresent = "replicates_present"
    case schemaVersion = "schema_version"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    kind = try c.decode(String.self, forKey: .kind)
    method = try c.decodeIfPresent(String.self, forKey: .method) ?? "?"
    allocation = try c.decodeIfPresent(String.self, forKey: .allocation)
    runDir = try c.decodeIfPresent(String.self, forKey: .runDir) ?? ""
    machineChanged = try c.decodeIfPresent(Bool.self, forKey: .machineChanged) ?? false
    machineChanges = try c.decodeIfPresent([JSONValue].self, forKey: .machineChanges)
    replicatesPresent = try c.decodeIfPresent([Int].self, forKey: .replicatesPresent) ?? []
    unfinished = try c.decodeIfPresent([UnfinishedPhase].self, forKey: .unfinished) ?? []
    rows =
      try c.decodeIfPresent([ResultRow].self, forKey: .levels)
      ?? c.decodeIfPresent([ResultRow].self, forKey: .densities) ?? []
    record = RunRecord(
      hparams: try c.decodeIfPresent(JSONValue.self, forKey: .hparams),
      provenance: try c.decodeIfPresent(JSONValue.self, forKey: .provenance),
      commands: try c.decodeIfPresent([JSONValue].self, forKey: .commands) ?? [])
    schemaVersion = try c.decodeIfPresent(Int.self, forKey: .schemaVersion) ?? ResultSchema.version
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encode(method, forKey: .method)
    try c.encodeIfPresent(allocation, forKey: .allocation)
    try c.encode(runDir, forKey: .runDir)
    try c.encode(machineChanged, forKey: .machineChanged)
    try c.encodeIfPresent(machineChanges, forKey: .machineChanges)
    try c.encode(replicatesPresent, forKey: .replicatesPresent)
    try c.encode(unfinished, forKey: .unfinished)
    try c.encode(rows, forKey: isPaI ? .densities : .levels)
    try record.encodeFields(into: &c, hparams: .hparams, provenance: .provenance, commands: .commands)
    try c.encode(schemaVersion, forKey: .schemaVersion)
  }

  /// The training hyperparameters the run recorded.
  public var training: JSONValue? { record.hparams?["training"] }
}

extension RunRecord {
  /// Writes the record's keys into a result object (`hparams` and `provenance` only when
  /// `hparams.json` was readable).
  func encodeFields<K: CodingKey>(
    into c: inout KeyedEncodingContainer<K>, hparams: K, provenance: K, commands: K
  ) throws {
    if self.hparams != nil || self.provenance != nil {
      try c.encode(self.hparams ?? .null, forKey: hparams)
      try c.encode(self.provenance ?? .null, forKey: provenance)
    }
    try c.encode(self.commands, forKey: commands)
  }

  /// Public form of ``encodeFields(into:hparams:provenance:commands:)`` for result types of
  /// modules above this one.
  public func encode<K: CodingKey>(into c: inout KeyedEncodingContainer<K>, hparams: K, provenance: K, commands: K)
    throws
  {
    try encodeFields(into: &c, hparams: hparams, provenance: provenance, commands: commands)
  }

  /// Reads the record keys of a result object.
  public static func decode<K: CodingKey>(from c: KeyedDecodingContainer<K>, hparams: K, provenance: K, commands: K)
    throws -> RunRecord
  {
    RunRecord(
      hparams: try c.decodeIfPresent(JSONValue.self, forKey: hparams),
      provenance: try c.decodeIfPresent(JSONValue.self, forKey: provenance),
      commands: try c.decodeIfPresent([JSONValue].self, forKey: commands) ?? [])
  }
}
