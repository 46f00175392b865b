import Engine
import Foundation
import Testing

/// Runs the `lth` binary built next to the test bundle.
/// Shared helpers for the end-to-end tests that run the `lth` binary.
public enum CLI {
  public static var binary: String {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return exe.deletingLastPathComponent().appendingPathComponent("lth").path
  }

  public struct Result {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// True when the process was killed by a signal.
    public var signaled: Bool
  }

  /// Runs `lth args` (optionally through `bash -c` with a prefix such as `ulimit -f 100;`).
  @discardableResult
  public static func run(
    _ args: [String], shellPrefix: String? = nil, killAfter: Double? = nil, signal: Int32 = SIGKILL
  ) throws
    -> Result
  {
    let p = Process()
    if let prefix = shellPrefix {
      p.executableURL = URL(fileURLWithPath: "/bin/bash")
      let quoted = ([binary] + args).map { "'\($0)'" }.joined(separator: " ")
      p.arguments = ["-c", prefix + " exec " + quoted]
    } else {
      p.executableURL = URL(fileURLWithPath: binary)
      p.arguments = args
    }
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    if let t = killAfter {
      let deadline = Date().addingTimeInterval(t)
      while p.isRunning && Date() < deadline { usleep(2000) }
      if p.isRunning { kill(p.processIdentifier, signal) }
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Result(
      status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
      stderr: String(decoding: e, as: UTF8.self), signaled: p.terminationReason == .uncaughtSignal)
  }

  /// A run that was killed at random moments and then run to the end: its folder and how
  /// many kills landed (at least one).
  public struct KilledRun {
    public var output: String
    public var kills: Int
  }

  /// Kills a run at random moments, reruns it to the end, and returns the folder it finished in.
  ///
  /// `attempt(output, killAfter)` runs the command(s) once in `output`, killing them after
  /// `killAfter` seconds when that is not nil, and returns true when they ran to the end.
  /// Kill times are drawn from `fraction` of `duration` (a whole run's time, measured by the
  /// caller) until `kills` kills have landed; then the run goes on unkilled.
  ///
  /// The one thing a kill test must not do is pass without a kill: on these noisy machines a
  /// run can finish before a kill time drawn from a measurement taken under load. So a run
  /// that finishes before any kill has landed does not count: its own time becomes the new
  /// estimate (times 0.7) and the test starts again in a fresh folder, up to 8 times.
  public static func killAndRerun(
    kills wanted: Int, duration: Double, rng: inout RandomStream, fraction: ClosedRange<Double> = 0.05...0.9,
    _ attempt: (_ output: String, _ killAfter: Double?) throws -> Bool
  ) throws -> KilledRun {
    var estimate = duration
    for _ in 0..<8 {
      let output = tempDir()
      var kills = 0
      // Every rerun makes progress (or is killed), so this many attempts always finish.
      for _ in 0..<(wanted + 40) {
        let killAfter =
          kills < wanted ? rng.uniform(fraction.lowerBound, fraction.upperBound) * estimate : nil
        let started = Date()
        if try attempt(output, killAfter) {
          if kills > 0 { return KilledRun(output: output, kills: kills) }
          estimate = min(estimate, Date().timeIntervalSince(started)) * 0.7
          break
        }
        kills += 1
      }
    }
    Issue.record("no kill landed mid-run in 8 tries (last estimate \(estimate) s)")
    throw KillTestError.noKillLanded
  }

  public enum KillTestError: Error { case noKillLanded }

  /// A fresh folder for one test, inside this test process's own folder
  /// (``testProcessFolder``), which is removed when the process exits.
  public static func tempDir() -> String {
    let d = testProcessFolder + "/" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
  }

  /// Every file under `dir` with its bytes (for "left exactly as it was" checks).
  public static func snapshot(_ dir: String) -> [String: Data] {
    var out: [String: Data] = [:]
    let e = FileManager.default.enumerator(atPath: dir)
    while let f = e?.nextObject() as? String {
      var isDir: ObjCBool = false
      _ = FileManager.default.fileExists(atPath: dir + "/" + f, isDirectory: &isDir)
      if !isDir.boolValue { out[f] = FileManager.default.contents(atPath: dir + "/" + f) }
    }
    return out
  }

  /// Metrics without the wall-clock field.
  public static func metricsWithoutSeconds(_ path: String) throws -> [[String: String]] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    return try text.split(separator: "\n").map { line in
      let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
      return obj.filter { $0.key != "seconds" }.mapValues { "\($0)" }
    }
  }

  public static func runDir(_ output: String) throws -> String {
    let dirs = try FileManager.default.contentsOfDirectory(atPath: output).filter { $0.hasPrefix("train_") }
    #expect(dirs.count == 1)
    return output + "/" + dirs[0]
  }
}

/// Expects a failed run with exactly one line on stderr containing `substring`.
public func expectOneLineError(
  _ r: CLI.Result, _ substring: String, sourceLocation: SourceLocation = #_sourceLocation
) {
  #expect(r.status != 0 && !r.signaled, "status \(r.status)", sourceLocation: sourceLocation)
  #expect(r.stderr.split(separator: "\n").count == 1, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
  #expect(r.stderr.contains(substring), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
}

/// `$TMPDIR/lth-tests-<pid>-<uuid>`: every test folder of this process lives in it, and it is
/// removed at exit. Folders of test processes that are no longer running (killed, crashed)
/// are removed when the next test process starts. Before this, every `make test` left about
/// 12 GB of run folders behind in `/tmp` (4,409 of them had filled this machine's disk).
public let testProcessFolder: String = {
  let base = NSTemporaryDirectory()
  let fm = FileManager.default
  for name in (try? fm.contentsOfDirectory(atPath: base)) ?? [] where name.hasPrefix("lth-tests-") {
    let pid = Int32(name.dropFirst("lth-tests-".count).prefix { $0 != "-" }) ?? 0
    if pid > 0 && kill(pid, 0) != 0 && errno == ESRCH { try? fm.removeItem(atPath: base + name) }
  }
  let root = base + "lth-tests-\(getpid())-" + UUID().uuidString
  try! fm.createDirectory(atPath: root, withIntermediateDirectories: true)
  atexit { try? FileManager.default.removeItem(atPath: testProcessFolder) }
  return root
}()
