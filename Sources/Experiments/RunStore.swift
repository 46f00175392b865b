import BuildInfo
import Engine
import Foundation
import Training

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Who made a run, and on what machine: recorded in every `hparams.json` (runs and branches)
/// and in the `provenance.json` of every lottery level.
public struct Provenance: Codable, Sendable {
  public var lotterykitVersion: String
  /// The commit the binary was built from (embedded at build time, see ``BuildInfo``).
  public var gitCommit: String
  public var gitDirty: Bool?
  public var blasConfig: String
  public var blasCore: String
  public var blasThreads: Int
  public var blasEnvironment: [String: String]
  public var threads: Int
  public var created: String
  /// The convolution library next to BLAS, e.g. `oneDNN 2.6.3` (nil in older records).
  public var convolutionLibrary: String?
  /// The CPU's name (`model name` of /proc/cpuinfo; nil in older records).
  public var cpuModel: String?
  /// The ISA oneDNN dispatches to (`avx2`, `avx512_core`, ...); null without oneDNN.
  public var onednnISA: String?
  /// OpenBLAS's threading build: `pthreads`, `openmp` or `sequential` (nil in older records).
  public var blasParallel: String?
  /// The library behind `Float` matrix products (``BLASInfo/floatGEMM``; nil in older
  /// records).
  public var floatGEMM: String?
  /// Every convolution layer's backend as planned for this run's input shape (nil for
  /// models without convolutions and in older records).
  public var convBackends: [String: String]?

  enum CodingKeys: String, CodingKey {
    case lotterykitVersion = "lotterykit_version"
    case gitCommit = "git_commit"
    case gitDirty = "git_dirty"
    case blasConfig = "blas_config"
    case blasCore = "blas_core"
    case blasThreads = "blas_threads"
    case blasEnvironment = "blas_environment"
    case threads, created
    case convolutionLibrary = "convolution_library"
    case cpuModel = "cpu_model"
    case onednnISA = "onednn_isa"
    case blasParallel = "blas_parallel"
    case convBackends = "conv_backends"
    case floatGEMM = "float_gemm"
  }

  /// The current process: version, the commit embedded at build time, the CPU, oneDNN's
  /// ISA, BLAS settings, threads and (when given) the planned convolution backends.
  public static func current(convBackends: [String: String]? = nil) -> Provenance {
    Provenance(
      lotterykitVersion: LotteryKitVersion.version, gitCommit: BuildInfo.gitCommit,
      gitDirty: BuildInfo.gitDirty,
      blasConfig: BLASInfo.config, blasCore: BLASInfo.coreName, blasThreads: BLASInfo.threads,
      blasEnvironment: BLASInfo.environment, threads: Parallel.threads,
      created: ISO8601DateFormatter().string(from: Date()), convolutionLibrary: Convolution.library,
      cpuModel: MachineInfo.cpuModel, onednnISA: Convolution.onednnISA, blasParallel: BLASInfo.parallelBuild,
      floatGEMM: BLASInfo.floatGEMM, convBackends: convBackends)
  }

  /// As a JSON object; `onednn_isa` is written as null (not left out) without oneDNN.
  public func jsonObject() throws -> [String: JSONValue] {
    var o = try JSONValue(encoding: self).object ?? [:]
    if onednnISA == nil { o["onednn_isa"] = .null }
    return o
  }
}

/// Run folders: creation, the `hparams.json` check on a hash hit, and the lock.
public enum RunStore {
  /// Makes `path` (and parents), or explains why it cannot.
  public static func makeDirectory(_ path: String) throws {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
      guard isDir.boolValue else { throw RunError("\(path) exists and is not a folder") }
    } else {
      do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
      } catch {
        throw RunError("cannot create the run folder \(path): permission denied or read-only file system")
      }
    }
    guard FileManager.default.isWritableFile(atPath: path) else {
      throw RunError("the output folder \(path) is not writable")
    }
  }

  /// The `hparams` object of a run folder's `hparams.json` (nil when there is none);
  /// throws when the file is unreadable.
  static func storedHParams(_ directory: String) throws -> (file: [String: JSONValue], hparams: JSONValue)? {
    let path = RunFile.hparams.path(in: directory)
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    let (obj, stored) = try parseHParamsFile(try AtomicFile.read(path), path: path)
    return (obj, stored)
  }

  /// An `hparams.json`'s bytes: the whole object and its `hparams` object (anything else,
  /// including an `hparams` that is not an object, is one clear error).
  static func parseHParamsFile(_ bytes: [UInt8], path: String) throws -> (
    file: [String: JSONValue], hparams: JSONValue
  ) {
    guard let obj = JSONValue.parse(bytes)?.object, let stored = obj["hparams"], stored.object != nil else {
      throw RunError("\(path) is unreadable or truncated; move the run folder aside to start over")
    }
    return (obj, stored)
  }

  /// Whether a stored `hparams` object describes the same values as `hparamsJSON`
  /// (numbers written as 1 by one writer and 1.0 by another are the same number).
  static func same(_ stored: JSONValue, _ hparamsJSON: String) throws -> Bool {
    guard let ours = JSONValue.parse(Array(hparamsJSON.utf8)) else { throw RunError("unreadable hyperparameters") }
    return stored.sameValue(ours)
  }

  /// Writes `hparams.json` for a new run, or checks that an existing one describes the
  /// same hyperparameters (`hparamsJSON` is the canonical JSON of the hashed object).
  /// Returns whether the folder already had one (a resumed or finished run).
  @discardableResult
  public static func claim(
    directory: String, hparamsJSON: String, kind: String, convBackends: [String: String]? = nil
  ) throws -> Bool {
    let path = RunFile.hparams.path(in: directory)
    if let (_, stored) = try storedHParams(directory) {
      guard try same(stored, hparamsJSON) else {
        throw RunError(
          "\(path) describes other hyperparameters than this command (hash collision or edited file)")
      }
      return true
    }
    guard let hparams = JSONValue.parse(Array(hparamsJSON.utf8)) else { throw RunError("unreadable hyperparameters") }
    let obj: JSONValue = .object([
      "kind": .string(kind), "hparams": hparams,
      "provenance": .object(try Provenance.current(convBackends: convBackends).jsonObject()),
      "run_hash": .string(RunHash.sha256(hparamsJSON)), "hash_scheme": .string(RunHash.scheme),
    ])
    try writeJSON(obj, to: path)
    return false
  }

  /// Writes `value` as pretty JSON with sorted keys (atomic).
  public static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .prettyPrinted]
    try AtomicFile.write([UInt8](try e.encode(value)) + [10], to: path)
  }

  /// Finds a run folder made under the old FNV hash: when `directory` does not exist but
  /// `legacy` does and its `hparams.json` describes the same hyperparameters, renames it to
  /// `directory` (one atomic rename, under the old folder's lock), records the old name in
  /// its `hparams.json`, and says so in one line on stderr. Returns whether it did.
  @discardableResult
  public static func migrate(from legacy: String, to directory: String, hparamsJSON: String) throws -> Bool {
    let fm = FileManager.default
    guard legacy != directory, !fm.fileExists(atPath: directory),
      fm.fileExists(atPath: RunFile.hparams.path(in: legacy))
    else { return false }
    let lock = try FileLock(legacy + "/.lock", what: "run folder \(legacy)")
    defer { withExtendedLifetime(lock) {} }
    guard !fm.fileExists(atPath: directory), let (file, stored) = try storedHParams(legacy),
      try same(stored, hparamsJSON)
    else { return false }
    guard rename(legacy, directory) == 0 else {
      throw RunError("cannot rename \(legacy) to \(directory): \(String(cString: strerror(errno)))")
    }
    var updated = file
    updated["migrated_from"] = .string((legacy as NSString).lastPathComponent)
    updated["run_hash"] = .string(RunHash.sha256(hparamsJSON))
    updated["hash_scheme"] = .string(RunHash.scheme)
    try writeJSON(JSONValue.object(updated), to: RunFile.hparams.path(in: directory))
    FileHandle.standardError.write(
      Data(
        "migrated \(legacy) to \((directory as NSString).lastPathComponent) (run folders are now named by SHA-256)\n"
          .utf8))
    return true
  }

  /// The `hparams` object of an `hparams.json` as canonical JSON (sorted keys); `path`
  /// only names the file in errors.
  public static func storedHParams(_ bytes: [UInt8], path: String) throws -> String {
    let (_, stored) = try parseHParamsFile(bytes, path: path)
    return jsonLine(stored)
  }

  /// Creates and locks an experiment folder `root` under `output` and records (or checks)
  /// its hyperparameters: the lock and whether the folder existed before.
  public static func openExperiment(
    output: String, root: String, hparamsJSON: String, kind: String, convBackends: [String: String]?
  ) throws -> (lock: FileLock, existed: Bool) {
    try makeDirectory(output)
    try makeDirectory(root)
    let lock = try self.lock(root, wait: true)
    let existed = try claim(directory: root, hparamsJSON: hparamsJSON, kind: kind, convBackends: convBackends)
    return (lock, existed)
  }

  /// The lock of one phase (a level, a branch, a density, a spawn step), a hidden file
  /// beside its folder (`level_3/.main.lock`). Phases of one experiment can run in separate processes
  /// (array tasks, `lth run --jobs`); two processes on the same phase wait for each other,
  /// and the second finds it finished. The experiment folder's own lock is held only while
  /// a command records itself (hyperparameters, machine, command line).
  public static func phaseLock(_ dir: String) throws -> FileLock {
    let ns = dir as NSString
    let lock = try FileLock(
      ns.deletingLastPathComponent + "/." + ns.lastPathComponent + ".lock", what: "phase \(dir)", wait: true)
    // Holding the phase, remove what a killed writer left in it (and one level down:
    // an lmc spawn step's parent and children).
    let fm = FileManager.default
    var folders = [dir]
    for f in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where !f.hasPrefix(".") {
      var isDir: ObjCBool = false
      if fm.fileExists(atPath: dir + "/" + f, isDirectory: &isDir), isDir.boolValue {
        folders.append(dir + "/" + f)
      }
    }
    for d in folders {
      for f in (try? fm.contentsOfDirectory(atPath: d)) ?? [] where f.hasPrefix(".") && f.contains(".tmp-") {
        try? fm.removeItem(atPath: d + "/" + f)
      }
    }
    return lock
  }

  /// The file of every command line that opened an experiment folder (for provenance).
  public static let commandsFile = RunFile.commands.rawValue

  /// Appends this process's command line, time, thread count, build (commit, version) and
  /// `outcome` `running` to `root/commands.jsonl` (the file is rewritten atomically under
  /// its own lock and keeps the last 200 lines). Commands call it when they have work to
  /// do, after the machine check: a command that only reports, or is refused before it
  /// starts, leaves the folder as it was. ``CommandRecord/finish(_:message:)`` then sets the
  /// outcome: `finished`, `failed` (with the error's line) or `stopped` (SIGTERM); a
  /// command killed outright stays `running`.
  @discardableResult
  public static func recordCommand(_ root: String, arguments: [String] = CommandLine.arguments) throws
    -> CommandRecord
  {
    // The build too: a run continued by another LotteryKit may round differently.
    let entry: [String: JSONValue] = [
      "argv": .array(arguments.map(JSONValue.string)), "created": .string(ISO8601DateFormatter().string(from: Date())),
      "threads": .int(Parallel.threads), "git_commit": .string(BuildInfo.gitCommit),
      "lotterykit_version": .string(LotteryKitVersion.version),
      "outcome": .string(CommandRecord.Outcome.running.rawValue), "pid": .int(Int(getpid())),
    ]
    let line = Array(jsonLine(entry).utf8)
    try CommandRecord.rewrite(root) { $0 + [line] }
    return CommandRecord(root: root, entry: entry, line: line)
  }

  /// The sequence every experiment command starts with: open the experiment folder, and
  /// when there is work to do, check the machine (for a folder that existed) and record the
  /// command; then release the folder's lock so that phases can run in parallel. Returns
  /// the command's record (nil when there is nothing to do).
  public static func begin(
    _ experiment: any Experiment, command: String, requireSameCPU: Bool, alwaysCheckMachine: Bool = false,
    hasWork: () throws -> Bool
  ) throws -> CommandRecord? {
    let existed = try experiment.open()
    defer { experiment.releaseRoot() }
    guard try hasWork() else { return nil }
    if existed || alwaysCheckMachine {
      try experiment.checkMachine(command: command, requireSameCPU: requireSameCPU)
    }
    return try recordCommand(experiment.root)
  }

  /// What a report shows of a run folder: its `hparams`, its `provenance` (the machine and
  /// build that created it) and the `commands` recorded in `commands.jsonl`, each present
  /// when readable.
  public static func record(of root: String) -> RunRecord {
    var out = RunRecord()
    if let bytes = try? AtomicFile.read(RunFile.hparams.path(in: root)), let file = JSONValue.parse(bytes),
      file.object != nil
    {
      out.hparams = file["hparams"] ?? .null
      out.provenance = file["provenance"] ?? .null
    }
    out.commands = ((try? AtomicFile.read(RunFile.commands.path(in: root))) ?? []).split(separator: 10).compactMap {
      JSONValue.parse(Array($0)).flatMap { $0.object != nil ? $0 : nil }
    }
    return out
  }

  /// Takes the run's lock (released when the process exits, even by a crash) and removes
  /// temporary files that a killed process left behind mid-write.
  public static func lock(_ directory: String, wait: Bool = false) throws -> FileLock {
    let lock = try FileLock(directory + "/.lock", what: "run folder \(directory)", wait: wait)
    for f in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    where f.hasPrefix(".") && f.contains(".tmp-") {
      try? FileManager.default.removeItem(atPath: directory + "/" + f)
    }
    return lock
  }
}

/// Continuing a run on another machine. A run's reference machine is the one in its
/// `hparams.json` provenance, or the last one `machine_changes.json` records. A runner that
/// is about to train more of a run compares it with this process's machine: oneDNN's ISA,
/// the OpenBLAS core, the `Float` GEMM library and the planned convolution backends (what changes the numbers; the
/// CPU's name alone does not). On a difference it says so in one line on stderr and appends
/// an entry to `machine_changes.json` (atomic write); with `--require-same-cpu` it stops
/// with one line instead, before writing anything.
public enum MachineCheck {
  /// The fields compared, as named in provenance.
  public static let comparedFields = ["onednn_isa", "blas_core", "float_gemm", "conv_backends"]
  /// The fields recorded for each machine in `machine_changes.json`.
  static let machineFields = [
    "cpu_model", "onednn_isa", "blas_core", "blas_parallel", "float_gemm", "conv_backends",
  ]
  public static let fileName = RunFile.machineChanges.rawValue

  /// The entries of a run folder's `machine_changes.json` (empty when there is none).
  /// The entries of a run folder's `machine_changes.json` as written (empty when there is none).
  public static func entries(in runDir: String) throws -> [JSONValue] {
    let path = runDir + "/" + fileName
    guard FileManager.default.fileExists(atPath: path) else { return [] }
    guard let a = JSONValue.parse(try AtomicFile.read(path))?.array else {
      throw RunError("\(path) is unreadable or truncated")
    }
    return a
  }

  /// This process's machine (the ``machineFields`` of ``Provenance/current(convBackends:)``).
  public static func current(convBackends: [String: String]?) throws -> [String: JSONValue] {
    let p = try Provenance.current(convBackends: convBackends).jsonObject()
    var out: [String: JSONValue] = [:]
    for k in machineFields { out[k] = p[k] ?? .null }
    return out
  }

  static func text(_ v: JSONValue?) -> String { v?.text ?? "none" }

  /// "field old -> new" for every compared field that differs; fields an older record
  /// lacks are not compared.
  public static func differences(recorded: [String: JSONValue], current: [String: JSONValue]) -> [String] {
    var out: [String] = []
    for field in comparedFields {
      guard let r = recorded[field] else { continue }
      let c = current[field] ?? .null
      if field == "conv_backends" {
        let rd = (r.object ?? [:]).compactMapValues(\.string)
        let cd = (c.object ?? [:]).compactMapValues(\.string)
        for layer in Set(rd.keys).union(cd.keys).sorted() where rd[layer] != cd[layer] {
          out.append("conv_backends[\(layer)] \(rd[layer] ?? "none") -> \(cd[layer] ?? "none")")
        }
      } else if text(r) != text(c) {
        out.append("\(field) \(text(r)) -> \(text(c))")
      }
    }
    return out
  }

  /// The git commit of the LotteryKit build that last worked on `runDir`: the newest
  /// `commands.jsonl` entry that names one, else the newest machine change, else the
  /// provenance of `hparams.json`; nil when none is recorded.
  static func lastBuild(runDir: String, hparamsFile: [String: JSONValue], machineChanges: [JSONValue])
    -> String?
  {
    let commands = ((try? AtomicFile.read(runDir + "/" + RunStore.commandsFile)) ?? []).split(separator: 10)
    for line in commands.reversed() {
      if let c = JSONValue.parse(Array(line))?["git_commit"]?.string { return c }
    }
    if let c = machineChanges.last?["git_commit"]?.string { return c }
    return hparamsFile["provenance"]?["git_commit"]?.string
  }

  /// Checks the machine before more of `runDir` is trained (see the type's description).
  /// A run last worked on by another LotteryKit build (another git commit) gets a note too,
  /// never a refusal: `--require-same-cpu` is about the machine.
  /// Returns whether this process's machine differs from the run's.
  @discardableResult
  public static func check(
    runDir: String, command: String, convBackends: [String: String]?, requireSameCPU: Bool
  ) throws -> Bool {
    guard let (file, _) = try RunStore.storedHParams(runDir) else { return false }
    let entries = try self.entries(in: runDir)
    let recorded = entries.last?["machine"]?.object ?? file["provenance"]?.object ?? [:]
    let now = try current(convBackends: convBackends)
    let diffs = differences(recorded: recorded, current: now)
    let what = diffs.joined(separator: ", ")
    if requireSameCPU && !diffs.isEmpty {
      throw RunError(
        "\(runDir) was run on another machine (\(what)); --require-same-cpu refuses to continue it here")
    }
    if let build = lastBuild(runDir: runDir, hparamsFile: file, machineChanges: entries),
      build != BuildInfo.gitCommit, build != "unknown", BuildInfo.gitCommit != "unknown"
    {
      FileHandle.standardError.write(
        Data(
          "note: continuing \(runDir) with another LotteryKit build (last worked on by \(build.prefix(12)), this is \(BuildInfo.gitCommit.prefix(12))); results may differ from an uninterrupted run by rounding\n"
            .utf8))
    }
    guard !diffs.isEmpty else { return false }
    var changes: [String: JSONValue] = [:]
    for field in comparedFields
    where differences(recorded: recorded.filter { $0.key == field }, current: now).count > 0 {
      changes[field] = .object(["from": recorded[field] ?? .null, "to": now[field] ?? .null])
    }
    let entry: JSONValue = .object([
      "created": .string(ISO8601DateFormatter().string(from: Date())), "command": .string(command),
      "changes": .object(changes), "machine": .object(now), "git_commit": .string(BuildInfo.gitCommit),
    ])
    try RunStore.writeJSON(entries + [entry], to: runDir + "/" + fileName)
    FileHandle.standardError.write(
      Data("note: continuing \(runDir) on a different machine: \(what) (recorded in \(fileName))\n".utf8))
    return true
  }
}

/// One command's line in `commands.jsonl` (see ``RunStore/recordCommand(_:arguments:)``).
public struct CommandRecord {
  public enum Outcome: String, Sendable, Codable {
    case running, finished, failed, stopped
  }
  public let root: String
  let entry: [String: JSONValue]
  let line: [UInt8]

  /// Sets this command's outcome (and, on failure, the error's first line) in place.
  public func finish(_ outcome: Outcome, message: String? = nil) throws {
    var e = entry
    e["outcome"] = .string(outcome.rawValue)
    if let message { e["error"] = .string(String(message.split(separator: "\n").first ?? "")) }
    let updated = Array(jsonLine(e).utf8)
    try Self.rewrite(root) { lines in lines.map { $0 == line ? updated : $0 } }
  }

  /// Runs `body`, then records its outcome: `finished`, `stopped` on ``Training/Stopped``,
  /// `failed` on any other error (which is rethrown). A nil record only runs `body`.
  public static func perform<R>(_ record: CommandRecord?, _ body: () throws -> R) throws -> R {
    do {
      let r = try body()
      try record?.finish(.finished)
      return r
    } catch let e as Stopped {
      try? record?.finish(.stopped)
      throw e
    } catch {
      try? record?.finish(.failed, message: "\(error)")
      throw error
    }
  }

  /// Rewrites `root/commands.jsonl` through `change`, under its own lock, keeping 200 lines.
  static func rewrite(_ root: String, _ change: ([[UInt8]]) -> [[UInt8]]) throws {
    let lock = try FileLock(RunFile.commandsLock.path(in: root), what: "the command log of \(root)", wait: true)
    defer { withExtendedLifetime(lock) {} }
    let path = RunFile.commands.path(in: root)
    let lines = ((try? AtomicFile.read(path)) ?? []).split(separator: 10).map { Array($0) }
    try AtomicFile.write(Array(change(lines).suffix(200).joined(separator: [10])) + [10], to: path)
  }
}

/// An experiment kind's runner, as the commands drive it: it owns a root folder under
/// its hash, opens it (taking its lock), checks the machine before more work, and
/// releases the lock so that phases (each with its own lock) can run in parallel.
///
/// What it trains comes from its plan (``ExperimentPlan``: kind, hyperparameters, root,
/// phases, what is unfinished); ``run(_:)`` trains one phase, skipping it when finished.
public protocol Experiment: AnyObject {
  /// `<output>/<kind>_<hash>`.
  var root: String { get }
  /// Trains one phase of the experiment's plan (nothing when its marker exists).
  func run(_ phase: ExperimentPhase) throws
  /// Creates or claims the root (checking its `hparams.json`); returns whether it existed.
  @discardableResult func open() throws -> Bool
  /// Compares this machine with the one that last worked on the run (see ``MachineCheck``).
  func checkMachine(command: String, requireSameCPU: Bool) throws
  func releaseRoot()
}
