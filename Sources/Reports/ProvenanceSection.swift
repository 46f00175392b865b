import Experiments
import Foundation
import Training

/// Where every number on the page came from, per run: the command lines that opened the
/// run folder, LotteryKit version and commit, CPU, ISA, BLAS, threads, the wall-clock time
/// of every finished phase, what is unfinished, and the hyperparameters.
public enum ProvenanceSection {
  public static func html(_ runs: [RunResult]) -> String {
    let e = escapeMarkup
    var o = "<section class=\"provenance\" id=\"provenance\">\n<h2>Provenance</h2>\n"
    for run in runs {
      o += "<h3><code>\(e(run.runDir))</code> (\(e(run.kind)))</h3>\n"
      let p = run.record.provenance
      var facts: [[String]] = []
      func fact(_ label: String, _ key: String) {
        if let v = p?[key], v != .null { facts.append([label, v.text]) }
      }
      fact("created", "created")
      fact("LotteryKit", "lotterykit_version")
      if let c = p?["git_commit"]?.string {
        facts.append(["commit", c + (p?["git_dirty"]?.bool == true ? " (uncommitted changes)" : "")])
      }
      fact("CPU", "cpu_model")
      fact("oneDNN ISA", "onednn_isa")
      fact("convolution library", "convolution_library")
      fact("BLAS", "blas_config")
      fact("BLAS core", "blas_core")
      fact("float GEMM", "float_gemm")
      fact("threads", "threads")
      if run.machineChanged {
        facts.append(["machine", "part of this run was trained on another machine (\(RunFile.machineChanges.rawValue))"])
      }
      o += Report.table(["field", "value"], facts.map(Report.plain), nameColumns: 2)
      let commands = run.record.commands
      if !commands.isEmpty {
        o +=
          "<p>Commands that began work in this run folder (newest last), with their outcome: finished, failed, stopped (SIGTERM), or running (still running, or killed):</p>\n<pre>"
        for c in commands.suffix(20) {
          let argv = (c["argv"]?.array ?? []).compactMap(\.string).map(shellQuoted).joined(separator: " ")
          let build = c["git_commit"]?.string.map { "  build \($0.prefix(12))" } ?? ""
          // Records written before outcomes were kept have none.
          let outcome = c["outcome"]?.string.map { "  \($0)" } ?? ""
          let error = c["error"]?.string.map { ": \($0)" } ?? ""
          o +=
            e("\(c["created"]?.string ?? "")  [\(c["threads"]?.text ?? "?") threads\(build)]\(outcome)\(error)  \(argv)")
            + "\n"
        }
        o += "</pre>\n"
      }
      o += phaseTimes(run)
      let unfinished = run.unfinished
      o +=
        unfinished.isEmpty
        ? "<p>Every phase begun in this folder has finished.</p>\n"
        : "<p class=\"warn\">\(unfinished.count) phase\(unfinished.count == 1 ? "" : "s") begun without a result (killed, or still running).</p>\n"
      if let h = run.record.hparams, h != .null, let data = try? pretty.encode(h) {
        o +=
          "<details><summary>Hyperparameters</summary><pre>\(e(String(decoding: data, as: UTF8.self)))</pre></details>\n"
      }
    }
    return o + "</section>\n"
  }

  /// Wall-clock seconds of every finished phase: a table of replicate by level (or target
  /// density) for the main line, with the total over every line.
  static let pretty: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .prettyPrinted]
    return e
  }()

  static func phaseTimes(_ result: RunResult) -> String {
    guard let run = result.rowsResult else { return "" }
    let rows = run.rows
    guard !rows.isEmpty else { return "" }
    let reps = run.replicatesPresent
    var total = 0.0
    var cells: [[String]] = []
    for r in rows {
      let label = r.level.map { "level \($0)" } ?? r.targetDensity.map { TickFormat.percent.text($0) } ?? "?"
      var line = [label]
      for k in reps {
        let s = r.perReplicate.first { $0.replicate == k }?.seconds
        line.append(s.map { String(format: "%.1f", $0) } ?? "-")
      }
      for (_, o) in r.lines { total += o.perReplicate.map(\.seconds).reduce(0, +) }
      cells.append(line)
    }
    return
      "<p>Wall-clock seconds per phase (main line; training time of the last process that ran it). Total over every line and branch: \(String(format: "%.1f", total)) s.</p>\n"
      + Report.table(["phase"] + reps.map { "replicate \($0)" }, cells.map(Report.plain))
  }

  /// A command-line argument as a POSIX shell would need it.
  static func shellQuoted(_ s: String) -> String {
    let safe = CharacterSet(
      charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
    if !s.isEmpty && s.unicodeScalars.allSatisfy({ safe.contains($0) }) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
  }
}
