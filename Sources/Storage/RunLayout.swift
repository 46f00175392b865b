import Foundation

/// The one place that names the run store's files and folders. Every other file builds
/// paths through ``RunFile`` and ``RunLayout``; a test greps the sources for the file names
/// below and fails on any literal outside this file.
///
/// ```text
/// <output>/train_<hash>/                       a training run
/// <output>/lottery_<hash>/replicate_R/level_L/main/            an IMP level
/// <output>/lottery_<hash>/replicate_R/level_L/branch_<kind>_<hash>/  a control
/// <output>/pai_<hash>/replicate_R/dense/ and density_<d>/main|branch_*/
/// <output>/lmc_<hash>/replicate_R/spawn_<k>/child_<c>/
/// <output>/scaling_<hash>/lottery_<hash>/...     one lottery per sweep point
/// ```
public enum RunFile: String, CaseIterable, Sendable {
  /// The hashed hyperparameters, the run hash and the provenance of a run folder.
  case hparams = "hparams.json"
  /// The machine that trained a phase (lottery levels, whose hyperparameters are the root's).
  case provenance = "provenance.json"
  /// Every command that worked in a folder, with its outcome.
  case commands = "commands.jsonl"
  /// Where a run was continued on another machine.
  case machineChanges = "machine_changes.json"
  case metrics = "metrics.jsonl"
  case metricsCSV = "metrics.csv"
  /// The resumable training state (model, optimizer, callbacks, step).
  case checkpoint = "checkpoint.safetensors"
  /// The kernels of the pruned layers when the run started.
  case sparseKernels = "sparse_kernels.json"
  /// A finished phase's summary: its presence marks the phase done.
  case summary = "summary.json"
  case mask = "mask.safetensors"
  case modelInit = "model_init.safetensors"
  case modelStart = "model_start.safetensors"
  case modelFinal = "model_final.safetensors"
  case modelRewind = "model_rewind.safetensors"
  /// A level exported in compressed form (`lth export`).
  case ticket = "ticket.safetensors"
  case sparsity = "sparsity.json"
  case interpolation = "interpolation.json"
  case interpolationCSV = "interpolation.csv"
  /// A scaling sweep's fitted law.
  case fit = "fit.json"
  /// A scaling sweep's list of points.
  case manifest = "manifest.json"
  /// `lth reproduce`'s checked claims (``Analysis/ReproductionResult``).
  case findings = "findings.json"
  /// `lth speedup`'s study (``Analysis/SpeedupResult``).
  case speedup = "speedup.json"
  /// Job-graph state of `lth run` / `lth submit`.
  case jobs = "jobs.json"
  case graph = "graph.json"
  case report = "report.html"
  /// The lock of a run folder.
  case lock = ".lock"
  /// The lock of `commands.jsonl` (commands update their outcome after the run's lock is released).
  case commandsLock = ".commands.lock"

  /// `directory/<file name>`.
  public func path(in directory: String) -> String { directory + "/" + rawValue }
}

/// Folder names of the run store (see ``RunFile`` for the layout).
public enum RunLayout {
  /// The kinds of experiment folder directly under an output folder.
  public enum Kind: String, CaseIterable, Sendable {
    case train, lottery, pai, lmc, scaling
    /// `lth reproduce`: a paper's findings over the runs it made (beside them, not above).
    case reproduce
    /// `lth speedup`: a time-to-accuracy study over the `train` runs it made (beside them).
    case speedup
  }

  /// `<output>/<kind>_<hash>`.
  public static func root(_ kind: Kind, output: String, hash: String) -> String {
    output + "/" + folderName(kind, hash: hash)
  }

  /// `<kind>_<hash>`.
  public static func folderName(_ kind: Kind, hash: String) -> String { kind.rawValue + "_" + hash }

  /// The kind of an experiment folder from its name (nil for other names).
  public static func kind(ofFolder path: String) -> Kind? {
    let name = (path as NSString).lastPathComponent
    return Kind.allCases.first { name.hasPrefix($0.rawValue + "_") }
  }

  /// `<root>/replicate_<r>`.
  public static func replicate(_ root: String, _ r: Int) -> String { root + "/" + replicatePrefix + String(r) }
  public static let replicatePrefix = "replicate_"

  /// `<root>/replicate_<r>/level_<l>`: a lottery level, holding `main` and the branches.
  public static func level(_ root: String, replicate r: Int, level l: Int) -> String {
    replicate(root, r) + "/" + levelPrefix + String(l)
  }
  public static let levelPrefix = "level_"

  /// The main line of a level (or of a pruning-at-init density): `<level>/main`.
  public static func main(_ levelDir: String) -> String { levelDir + "/" + mainFolder }
  public static let mainFolder = "main"

  /// A control's folder in a level: `branch_<kind>_<hash>`.
  public static func branchFolder(kind: String, hash: String) -> String { branchPrefix + kind + "_" + hash }
  public static let branchPrefix = "branch_"

  /// An LMC spawn step `spawn_<k>` and its children `child_<c>`.
  public static func spawn(_ replicateDir: String, _ step: String) -> String { replicateDir + "/spawn_" + step }
  public static func child(_ spawnDir: String, _ c: Int) -> String { spawnDir + "/child_" + String(c) }

  /// The level folder two steps up from a phase folder (`.../level_L/main` -> `.../level_L`).
  public static func parent(_ dir: String) -> String { (dir as NSString).deletingLastPathComponent }

  /// The lock of a phase folder that is made while it runs: `.<name>.lock` beside it.
  public static func phaseLock(_ dir: String) -> String {
    let ns = dir as NSString
    return ns.deletingLastPathComponent + "/." + ns.lastPathComponent + RunFile.lock.rawValue
  }
}
