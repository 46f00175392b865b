import Engine
import Foundation
import Training

/// Who made a run: recorded in every `hparams.json`.
public struct Provenance: Codable, Sendable {
  public var lotterykitVersion: String
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
  }

  /// The current process: version, the commit of the source tree this binary was built
  /// from (found through this file's compile-time path), BLAS settings and threads.
  public static func current() -> Provenance {
    let src = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
    let commit = git(["rev-parse", "HEAD"], in: src)
    let status = git(["status", "--porcelain", "--untracked-files=no"], in: src)
    return Provenance(
      lotterykitVersion: LotteryKitVersion.version, gitCommit: commit ?? "unknown",
      gitDirty: commit == nil ? nil : !(status ?? "").isEmpty, blasConfig: BLASInfo.config,
      blasCore: BLASInfo.coreName, blasThreads: BLASInfo.threads, blasEnvironment: BLASInfo.environment,
      threads: Parallel.threads, created: ISO8601DateFormatter().string(from: Date()),
      convolutionLibrary: Convolution.library)
  }

  nonisolated(unsafe) static var cachedGit: [String: String?] = [:]

  static func git(_ args: [String], in dir: String) -> String? {
    let key = args.joined(separator: " ") + "@" + dir
    if let c = cachedGit[key] { return c }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["git", "-C", dir] + args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    var result: String? = nil
    if (try? p.run()) != nil {
      let d = out.fileHandleForReading.readDataToEndOfFile()
      p.waitUntilExit()
      if p.terminationStatus == 0 {
        result = String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      }
    }
    cachedGit[key] = result
    return result
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

  /// Writes `hparams.json` for a new run, or checks that an existing one describes the
  /// same hyperparameters (`hparamsJSON` is the canonical JSON of the hashed object).
  public static func claim(directory: String, hparamsJSON: String, kind: String) throws {
    let path = directory + "/hparams.json"
    if FileManager.default.fileExists(atPath: path) {
      let storedJSON = try storedHParams(AtomicFile.read(path), path: path)
      let ours = try JSONSerialization.jsonObject(with: Data(hparamsJSON.utf8))
      let oursJSON = String(
        decoding: try JSONSerialization.data(withJSONObject: ours, options: [.sortedKeys]), as: UTF8.self)
      guard storedJSON == oursJSON else {
        throw RunError(
          "\(path) describes other hyperparameters than this command (hash collision or edited file)")
      }
      return
    }
    let prov = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(Provenance.current()))
    let obj: [String: Any] = [
      "kind": kind, "hparams": try JSONSerialization.jsonObject(with: Data(hparamsJSON.utf8)),
      "provenance": prov,
    ]
    let text = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted])
    try AtomicFile.write([UInt8](text) + [10], to: path)
  }

  /// The `hparams` object of an `hparams.json` as canonical JSON (sorted keys); `path`
  /// only names the file in errors.
  public static func storedHParams(_ bytes: [UInt8], path: String) throws -> String {
    guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
      let stored = obj["hparams"] as? [String: Any]
    else { throw RunError("\(path) is unreadable or truncated; move the run folder aside to start over") }
    return String(
      decoding: try JSONSerialization.data(withJSONObject: stored, options: [.sortedKeys]), as: UTF8.self)
  }

  /// Takes the run's lock (released when the process exits, even by a crash) and removes
  /// temporary files that a killed process left behind mid-write.
  public static func lock(_ directory: String) throws -> FileLock {
    let lock = try FileLock(directory + "/.lock", what: "run folder \(directory)")
    for f in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    where f.hasPrefix(".") && f.contains(".tmp-") {
      try? FileManager.default.removeItem(atPath: directory + "/" + f)
    }
    return lock
  }
}
