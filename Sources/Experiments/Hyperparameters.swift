import Engine

/// Where a hyperparameter's value comes from when nobody sets it.
public enum DefaultSource: Sendable, Equatable {
  /// No default: it must be given.
  case required
  /// The model family's recipe (``Families/Recipe``), so it differs per family.
  case recipe
  /// One fixed value for every family, as the flag would be written.
  case value(String)
  /// Worked out from other values; the text says how.
  case derived(String)

  /// The help text's closing words, e.g. ` (default: the model family's recipe)`.
  public var helpSuffix: String {
    switch self {
    case .required: return " (required)"
    case .recipe: return " (default: the model family's recipe)"
    case .value(let v): return " (default: \(v))"
    case .derived(let how): return " (default: \(how))"
    }
  }
}

/// One declaration per hyperparameter: the case's string value is the JSON key in
/// `hparams.json` (and what the run hash covers), and the case gives the command-line
/// flag (the key with hyphens unless ``flagName`` says otherwise), the help text, where
/// the default comes from, and whether the group enters the run hash.
///
/// Each hyperparameter group's `CodingKeys` conforms, so the JSON key and the flag cannot
/// drift apart; `lth` builds every flag's name and help from these cases, and a test walks
/// ``HyperparameterGroups/all`` against the encoded JSON and `lth`'s help.
public protocol HyperparameterKey: CodingKey, CaseIterable, Sendable where AllCases == [Self] {
  /// The flag without `--`; nil for a key that is a nested group or set only by the library.
  var flagName: String? { get }
  /// One sentence for `--help`, without the default.
  var help: String { get }
  var defaultSource: DefaultSource { get }
  /// Whether the group's values name the run folder (hyperparameters do; run settings such
  /// as thread count and output folder do not).
  static var hashed: Bool { get }
}

extension HyperparameterKey {
  public var flagName: String? { stringValue.replacingOccurrences(of: "_", with: "-") }
  public static var hashed: Bool { true }
  /// ``help`` with where the default comes from.
  public var fullHelp: String { help + defaultSource.helpSuffix }
  /// The error for a bad value of this hyperparameter (`lth` words it as the flag).
  public func invalid(_ problem: String) -> SettingError {
    SettingError((flagName ?? stringValue).replacingOccurrences(of: "-", with: "_"), problem)
  }
}

/// Settings of a command that are not hyperparameters: they never enter a run hash, and
/// results do not depend on them.
public enum RunSettingKey: String, HyperparameterKey {
  case threads, output, quiet, json
  case dataDir = "data_dir"
  case requireSameCPU = "require_same_cpu"
  case widthFactor = "width_factor"
  case replicates, replicate
  case recipe

  public static var hashed: Bool { false }
  public var help: String {
    switch self {
    case .threads: return "Worker threads (results do not depend on it)."
    case .output: return "Output root for run folders."
    case .quiet: return "No progress output."
    case .json: return "Make the last line of stdout one JSON object."
    case .dataDir: return "Folder with the data set's files (see docs/guide-training.md, Data sets)."
    case .requireSameCPU:
      return
        "Refuse (one line, nothing changed) to continue a run recorded on a machine with another oneDNN ISA, BLAS core or convolution backends."
    case .widthFactor:
      return
        "Scale every hidden layer's width by this factor (the model becomes e.g. mnist_lenet_150_50 or cifar_conv_2_w0.5; the model name is what is hashed)."
    case .replicates: return "Number of replicates, numbered 1...R."
    case .replicate: return "Run only replicate K."
    case .recipe:
      return
        "Composer's ResNet recipe: mild, medium or hot; expands into --algorithms (recorded, and hashed, there), leaving out methods that do not fit the model (docs/guide-speedup.md)."
    }
  }
  public var defaultSource: DefaultSource {
    switch self {
    case .threads: return .value("the number of cores")
    case .output: return .value("./lth_runs")
    case .quiet, .json, .requireSameCPU: return .value("false")
    case .dataDir: return .derived("the data cache")
    case .widthFactor: return .value("1")
    case .replicates: return .derived("1")
    case .replicate: return .derived("all of --replicates")
    case .recipe: return .value("none")
    }
  }
}

/// Every declared group, for tests and documentation: its name, its keys (as `(json key,
/// flag, help, hashed)`), and the JSON keys it encodes.
public enum HyperparameterGroups {
  public struct Entry: Sendable, Equatable {
    public let group: String
    public let key: String
    public let flag: String?
    /// The help sentence, and the help with where the default comes from.
    public let help: String
    public let fullHelp: String
    public let hashed: Bool
  }

  /// The entries of one group (modules above this one list theirs with it).
  public static func entries<K: HyperparameterKey>(_ group: String, _: K.Type) -> [Entry] {
    K.allCases.map {
      Entry(
        group: group, key: $0.stringValue, flag: $0.flagName, help: $0.help, fullHelp: $0.fullHelp,
        hashed: K.hashed)
    }
  }

  /// The groups of this module (``Analysis`` adds `lmc`: `LMCHParams.CodingKeys`).
  public static var all: [Entry] {
    entries("training", TrainingHParams.CodingKeys.self) + entries("lottery", LotteryHParams.CodingKeys.self)
      + entries("pruning", LotteryHParams.PruningKey.self) + entries("prune_init", PaIHParams.CodingKeys.self)
      + entries("settings", RunSettingKey.self)
  }
}
