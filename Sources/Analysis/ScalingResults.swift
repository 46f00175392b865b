import Experiments
import Training
import Foundation

/// One fitted parameter of the law: its value, its bootstrap standard deviation (nil
/// without resamples) and whether it was fitted (phi and psi are fixed at 0 without
/// several depths or widths).
public struct LawParameter: Codable, Equatable, Sendable {
  public var value: Double
  @Nullable public var std: Double?
  public var fitted: Bool

  public init(value: Double, std: Double?, fitted: Bool) {
    self.value = value
    self.std = std
    self.fitted = fitted
  }
}

/// The law's parameters by name (`e_up`, `gamma`, `p`, `phi`, `psi`).
public typealias LawParameters = [String: LawParameter]

extension Dictionary where Key == String, Value == LawParameter {
  /// The law these parameters give (nil without `e_up`, `gamma` and `p`).
  public var law: ScalingLaw? {
    guard let eUp = self["e_up"]?.value, let g = self["gamma"]?.value, let p = self["p"]?.value else { return nil }
    return ScalingLaw(eUp: eUp, gamma: g, p: p, phi: self["phi"]?.value ?? 0, psi: self["psi"]?.value ?? 0)
  }
}

/// A fit's `parameters`: the joint law's, or one set per configuration label.
public enum FitParameters: Codable, Equatable, Sendable {
  case joint(LawParameters)
  case perConfiguration([String: LawParameters])

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let j = try? c.decode(LawParameters.self) {
      self = .joint(j)
    } else {
      self = .perConfiguration(try c.decode([String: LawParameters].self))
    }
  }
  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .joint(let p): try c.encode(p)
    case .perConfiguration(let p): try c.encode(p)
    }
  }
}

/// The single-network fit of one configuration (or why it could not be fitted).
public struct ConfigurationFit: Codable, Equatable, Sendable {
  public var depth: Double
  public var widthFactor: Double
  public var dataFraction: Double
  public var eNP: Double
  public var points: Int
  public var heldOut: Bool
  public var label: String
  public var parameters: LawParameters?
  public var meanRelativeDeviation: Double?
  public var meanAbsRelativeDeviation: Double?
  public var stdRelativeDeviation: Double?
  public var error: String?

  enum CodingKeys: String, CodingKey {
    case depth, points, label, parameters, error
    case widthFactor = "width_factor"
    case dataFraction = "data_fraction"
    case eNP = "e_np"
    case heldOut = "held_out"
    case meanRelativeDeviation = "mean_relative_deviation"
    case meanAbsRelativeDeviation = "mean_abs_relative_deviation"
    case stdRelativeDeviation = "std_relative_deviation"
  }

  public var configuration: Configuration { Configuration(depth: depth, width: widthFactor, data: dataFraction) }
}

/// One measured (configuration, density) point with what the fits predict of it.
public struct FitPoint: Codable, Equatable, Sendable {
  public var depth: Double
  public var widthFactor: Double
  public var dataFraction: Double
  public var density: Double
  public var error: Double
  public var replicateErrors: [Double]
  public var eNP: Double
  public var heldOut: Bool
  /// The fitted law's prediction (joint, else the configuration's own fit).
  public var predicted: Double?
  public var relativeDeviation: Double?
  public var singlePredicted: Double?

  enum CodingKeys: String, CodingKey {
    case depth, density, error, predicted
    case widthFactor = "width_factor"
    case dataFraction = "data_fraction"
    case replicateErrors = "replicate_errors"
    case eNP = "e_np"
    case heldOut = "held_out"
    case relativeDeviation = "relative_deviation"
    case singlePredicted = "single_predicted"
  }

  public var configuration: Configuration { Configuration(depth: depth, width: widthFactor, data: dataFraction) }
}

/// A measured e_np.
public struct MeasuredENP: Codable, Equatable, Sendable {
  public var depth: Double
  public var widthFactor: Double
  public var dataFraction: Double
  public var eNP: Double
  enum CodingKeys: String, CodingKey {
    case depth
    case widthFactor = "width_factor"
    case dataFraction = "data_fraction"
    case eNP = "e_np"
  }
}

/// The fitted ranges of the knobs, each `[lowest, highest]`.
public struct FitRanges: Codable, Equatable, Sendable {
  public var depth: [Double]
  public var widthFactor: [Double]
  public var dataFraction: [Double]
  public var density: [Double]
  enum CodingKeys: String, CodingKey {
    case depth, density
    case widthFactor = "width_factor"
    case dataFraction = "data_fraction"
  }
}

/// `fit.json`, `lth scaling fit --json` and a scaling sweep's `lth report` data: the
/// measured points, the fits (one per configuration and, when joint, across them),
/// bootstrap uncertainty, seed noise and held-out prediction error. A sweep too young to
/// fit has only `family` and `error`.
public struct ScalingFitResult: Codable, Equatable, Sendable {
  public var kind = "scaling"
  public var family: String
  /// Why there is no fit yet (a report of a young sweep).
  public var error: String?
  public var sweep: String?
  public var law: String?
  /// `joint` or `single`.
  public var mode: String?
  public var seedNoise: Double?
  public var configurations: [ConfigurationFit]?
  public var unfinishedConfigurations: [String]?
  public var levels: Int?
  public var replicates: Int?
  public var singleMeanRelativeDeviation: Double?
  public var singleMeanAbsRelativeDeviation: Double?
  public var singleStdRelativeDeviation: Double?
  public var bootstrap: Bootstrap?
  public var ranges: FitRanges?
  public var eNPModel: UnprunedErrorModel?
  public var eNPMeasured: [MeasuredENP]?
  public var parameters: FitParameters?
  public var fittedParameters: [String]?
  public var starts: Int?
  public var bestStart: Int?
  public var meanRelativeDeviation: Double?
  public var meanAbsRelativeDeviation: Double?
  public var stdRelativeDeviation: Double?
  /// Mean |relative deviation| of the dense points (near 0 by construction; the statistics
  /// above are over pruned points only).
  public var denseMeanAbsRelativeDeviation: Double?
  public var points: [FitPoint]?
  /// What the fit cannot tell (unidentified parameters, a sweep that never leaves the
  /// plateau), as sentences; `lth scaling fit` prints them and the report shows them.
  public var warnings: [String]?
  public var holdout: HeldOut?
  /// Where the report found the sweep, and what it echoes of it.
  public var runDir: String?
  public var record: RunRecord?
  public var schemaVersion = ResultSchema.version

  public struct Bootstrap: Codable, Equatable, Sendable {
    public var resamples: Int
    /// `replicates` (resampled within each point) or `points`.
    public var over: String
  }

  /// Held-out configurations and the relative error of their predictions.
  public struct HeldOut: Equatable, Sendable {
    public var text: String
    public var configurations: [String]
    public var meanRelativeError: Double
    public var meanRelativeDeviation: Double
    public var stdRelativeError: Double
    public var points: Int
  }

  public init(family: String, error: String? = nil) { (self.family, self.error) = (family, error) }

  enum CodingKeys: String, CodingKey {
    case kind, family, error, sweep, law, mode, configurations, levels, replicates, bootstrap, ranges, parameters
    case starts, points, holdout, hparams, provenance, commands
    case seedNoise = "seed_noise"
    case unfinishedConfigurations = "unfinished_configurations"
    case singleMeanRelativeDeviation = "single_mean_relative_deviation"
    case singleMeanAbsRelativeDeviation = "single_mean_abs_relative_deviation"
    case singleStdRelativeDeviation = "single_std_relative_deviation"
    case eNPModel = "e_np_model"
    case eNPMeasured = "e_np_measured"
    case fittedParameters = "fitted_parameters"
    case bestStart = "best_start"
    case meanRelativeDeviation = "mean_relative_deviation"
    case meanAbsRelativeDeviation = "mean_abs_relative_deviation"
    case stdRelativeDeviation = "std_relative_deviation"
    case denseMeanAbsRelativeDeviation = "dense_mean_abs_relative_deviation"
    case warnings
    case heldOutConfigurations = "held_out_configurations"
    case holdoutMeanRelativeError = "holdout_mean_relative_error"
    case holdoutMeanRelativeDeviation = "holdout_mean_relative_deviation"
    case holdoutStdRelativeError = "holdout_std_relative_error"
    case holdoutPoints = "holdout_points"
    case runDir = "run_dir"
    case schemaVersion = "schema_version"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    family = try c.decodeIfPresent(String.self, forKey: .family) ?? "?"
    error = try c.decodeIfPresent(String.self, forKey: .error)
    sweep = try c.decodeIfPresent(String.self, forKey: .sweep)
    law = try c.decodeIfPresent(String.self, forKey: .law)
    mode = try c.decodeIfPresent(String.self, forKey: .mode)
    seedNoise = try c.decodeIfPresent(Double.self, forKey: .seedNoise)
    configurations = try c.decodeIfPresent([ConfigurationFit].self, forKey: .configurations)
    unfinishedConfigurations = try c.decodeIfPresent([String].self, forKey: .unfinishedConfigurations)
    levels = try c.decodeIfPresent(Int.self, forKey: .levels)
    replicates = try c.decodeIfPresent(Int.self, forKey: .replicates)
    singleMeanRelativeDeviation = try c.decodeIfPresent(Double.self, forKey: .singleMeanRelativeDeviation)
    singleMeanAbsRelativeDeviation = try c.decodeIfPresent(Double.self, forKey: .singleMeanAbsRelativeDeviation)
    singleStdRelativeDeviation = try c.decodeIfPresent(Double.self, forKey: .singleStdRelativeDeviation)
    bootstrap = try c.decodeIfPresent(Bootstrap.self, forKey: .bootstrap)
    ranges = try c.decodeIfPresent(FitRanges.self, forKey: .ranges)
    eNPModel = try c.decodeIfPresent(UnprunedErrorModel.self, forKey: .eNPModel)
    eNPMeasured = try c.decodeIfPresent([MeasuredENP].self, forKey: .eNPMeasured)
    parameters = try c.decodeIfPresent(FitParameters.self, forKey: .parameters)
    fittedParameters = try c.decodeIfPresent([String].self, forKey: .fittedParameters)
    starts = try c.decodeIfPresent(Int.self, forKey: .starts)
    bestStart = try c.decodeIfPresent(Int.self, forKey: .bestStart)
    meanRelativeDeviation = try c.decodeIfPresent(Double.self, forKey: .meanRelativeDeviation)
    meanAbsRelativeDeviation = try c.decodeIfPresent(Double.self, forKey: .meanAbsRelativeDeviation)
    stdRelativeDeviation = try c.decodeIfPresent(Double.self, forKey: .stdRelativeDeviation)
    points = try c.decodeIfPresent([FitPoint].self, forKey: .points)
    denseMeanAbsRelativeDeviation = try c.decodeIfPresent(Double.self, forKey: .denseMeanAbsRelativeDeviation)
    warnings = try c.decodeIfPresent([String].self, forKey: .warnings)
    if let text = try c.decodeIfPresent(String.self, forKey: .holdout) {
      holdout = HeldOut(
        text: text, configurations: try c.decodeIfPresent([String].self, forKey: .heldOutConfigurations) ?? [],
        meanRelativeError: try c.decodeIfPresent(Double.self, forKey: .holdoutMeanRelativeError) ?? .nan,
        meanRelativeDeviation: try c.decodeIfPresent(Double.self, forKey: .holdoutMeanRelativeDeviation) ?? .nan,
        stdRelativeError: try c.decodeIfPresent(Double.self, forKey: .holdoutStdRelativeError) ?? .nan,
        points: try c.decodeIfPresent(Int.self, forKey: .holdoutPoints) ?? 0)
    }
    runDir = try c.decodeIfPresent(String.self, forKey: .runDir)
    if c.contains(.commands) {
      record = try RunRecord.decode(from: c, hparams: .hparams, provenance: .provenance, commands: .commands)
    }
    schemaVersion = try c.decodeIfPresent(Int.self, forKey: .schemaVersion) ?? ResultSchema.version
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encode(family, forKey: .family)
    try c.encodeIfPresent(error, forKey: .error)
    if error == nil {
      try c.encode(sweep, forKey: .sweep)
      try c.encode(law, forKey: .law)
      try c.encode(mode, forKey: .mode)
      try c.encode(seedNoise, forKey: .seedNoise)
      try c.encode(configurations, forKey: .configurations)
      try c.encode(unfinishedConfigurations, forKey: .unfinishedConfigurations)
      try c.encode(levels, forKey: .levels)
      try c.encode(replicates, forKey: .replicates)
      try c.encode(singleMeanRelativeDeviation, forKey: .singleMeanRelativeDeviation)
      try c.encode(singleMeanAbsRelativeDeviation, forKey: .singleMeanAbsRelativeDeviation)
      try c.encode(singleStdRelativeDeviation, forKey: .singleStdRelativeDeviation)
      try c.encode(bootstrap, forKey: .bootstrap)
      try c.encode(ranges, forKey: .ranges)
      try c.encode(eNPModel, forKey: .eNPModel)
      try c.encode(eNPMeasured, forKey: .eNPMeasured)
      try c.encode(parameters, forKey: .parameters)
      try c.encode(fittedParameters, forKey: .fittedParameters)
      try c.encode(starts, forKey: .starts)
      try c.encodeIfPresent(bestStart, forKey: .bestStart)
      try c.encode(meanRelativeDeviation, forKey: .meanRelativeDeviation)
      try c.encode(meanAbsRelativeDeviation, forKey: .meanAbsRelativeDeviation)
      try c.encode(stdRelativeDeviation, forKey: .stdRelativeDeviation)
      try c.encode(points, forKey: .points)
      try c.encode(denseMeanAbsRelativeDeviation, forKey: .denseMeanAbsRelativeDeviation)
      try c.encode(warnings ?? [], forKey: .warnings)
    }
    if let h = holdout {
      try c.encode(h.text, forKey: .holdout)
      try c.encode(h.configurations, forKey: .heldOutConfigurations)
      try c.encode(h.meanRelativeError, forKey: .holdoutMeanRelativeError)
      try c.encode(h.meanRelativeDeviation, forKey: .holdoutMeanRelativeDeviation)
      try c.encode(h.stdRelativeError, forKey: .holdoutStdRelativeError)
      try c.encode(h.points, forKey: .holdoutPoints)
    }
    try c.encodeIfPresent(runDir, forKey: .runDir)
    try record?.encode(into: &c, hparams: .hparams, provenance: .provenance, commands: .commands)
    try c.encode(schemaVersion, forKey: .schemaVersion)
  }

  /// The joint law (joint fits only).
  public var jointLaw: ScalingLaw? {
    if case .joint(let p) = parameters { return p.law }
    return nil
  }
}

/// `lth scaling predict --json`.
public struct ScalingPrediction: Codable, Equatable, Sendable {
  public var predictedError: Double
  public var eNP: Double
  public var eNPSource: String
  public var extrapolation: Bool
  public var outside: [String]
  public var depth: Double
  public var widthFactor: Double
  public var dataFraction: Double
  public var density: Double
  public var family: String
  public var schemaVersion = ResultSchema.version

  public init(
    predictedError: Double, eNP: Double, eNPSource: String, extrapolation: Bool, outside: [String], depth: Double,
    widthFactor: Double, dataFraction: Double, density: Double, family: String
  ) {
    (self.predictedError, self.eNP, self.eNPSource, self.extrapolation, self.outside) =
      (predictedError, eNP, eNPSource, extrapolation, outside)
    (self.depth, self.widthFactor, self.dataFraction, self.density, self.family) =
      (depth, widthFactor, dataFraction, density, family)
  }

  enum CodingKeys: String, CodingKey {
    case extrapolation, outside, depth, density, family
    case predictedError = "predicted_error"
    case eNP = "e_np"
    case eNPSource = "e_np_source"
    case widthFactor = "width_factor"
    case dataFraction = "data_fraction"
    case schemaVersion = "schema_version"
  }
}

/// `lth scaling predict --target-error --json`: the smallest network predicted to reach it.
public struct SmallestNetwork: Codable, Equatable, Sendable {
  public var depth: Double
  public var widthFactor: Double
  public var density: Double
  public var model: String
  public var prunableWeights: Int
  public var remainingWeights: Int
  public var predictedError: Double
  public var eNPSource: String
  public var schemaVersion = ResultSchema.version
  enum CodingKeys: String, CodingKey {
    case depth, density, model
    case widthFactor = "width_factor"
    case prunableWeights = "prunable_weights"
    case remainingWeights = "remaining_weights"
    case predictedError = "predicted_error"
    case eNPSource = "e_np_source"
    case schemaVersion = "schema_version"
  }
}
