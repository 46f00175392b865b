import Experiments
import Foundation
import Training

/// Where every number on the page came from, per run: the command lines that opened the
/// run folder, LotteryKit version and commit, CPU, ISA, BLAS, threads, the wall-clock time
/// of every finished phase, what is unfinished, and the hyperparameters.
public enum ProvenanceSection {
  public static func html(_ runs: [[String: Any]]) -> String {
    let e = escapeMarkup
    var o = "<section class=\"provenance\" id=\"provenance\">\n<h2>Provenance</h2>\n"
    for run in runs {
      o +=
        "<h3><code>\(e(run["run_dir"] as? String ?? "?"))</code> (\(e(run["kind"] as? String ?? "?")))</h3>\n"
      let p = run["provenance"] as? [String: Any] ?? [:]
      var facts: [[String]] = []
      func fact(_ label: String, _ key: String) {
        if let v = p[key], !(v is NSNull) { facts.append([label, "\(v)"]) }
      }
      fact("created", "created")
      fact("LotteryKit", "lotterykit_version")
      if let c = p["git_commit"] as? String {
        facts.append(["commit", c + (p["git_dirty"] as? Bool == true ? " (uncommitted changes)" : "")])
      }
      fact("CPU", "cpu_model")
      fact("oneDNN ISA", "onednn_isa")
      fact("convolution library", "convolution_library")
      fact("BLAS", "blas_config")
      fact("BLAS core", "blas_core")
      fact("float GEMM", "float_gemm")
      fact("threads", "threads")
      if run["machine_changed"] as? Bool == true {
        facts.append(["machine", "part of this run was trained on another machine (\(RunFile.machineChanges.rawValue))"])
      }
      o += Report.table(["field", "value"], facts.map(Report.plain), nameColumns: 2)
      let commands = run["commands"] as? [[String: Any]] ?? []
      if !commands.isEmpty {
        o +=
          "<p>Commands that began work in this run folder (newest last), with their outcome: finished, failed, stopped (SIGTERM), or running (still running, or killed):</p>\n<pre>"
        for c in commands.suffix(20) {
          let argv = (c["argv"] as? [String] ?? []).map(shellQuoted).joined(separator: " ")
          let build = (c["git_commit"] as? String).map { "  build \($0.prefix(12))" } ?? ""
          // Records written before outcomes were kept have none.
          let outcome = (c["outcome"] as? String).map { "  \($0)" } ?? ""
          let error = (c["error"] as? String).map { ": \($0)" } ?? ""
          o +=
            e("\(c["created"] as? String ?? "")  [\(c["threads"] ?? "?") threads\(build)]\(outcome)\(error)  \(argv)")
            + "\n"
        }
        o += "</pre>\n"
      }
      o += phaseTimes(run)
      let unfinished = run["unfinished"] as? [[String: Any]] ?? []
      o +=
        unfinished.isEmpty
        ? "<p>Every phase begun in this folder has finished.</p>\n"
        : "<p class=\"warn\">\(unfinished.count) phase\(unfinished.count == 1 ? "" : "s") begun without a result (killed, or still running).</p>\n"
      if let h = run["hparams"], !(h is NSNull),
        let data = try? JSONSerialization.data(withJSONObject: h, options: [.sortedKeys, .prettyPrinted])
      {
        o +=
          "<details><summary>Hyperparameters</summary><pre>\(e(String(decoding: data, as: UTF8.self)))</pre></details>\n"
      }
    }
    return o + "</section>\n"
  }

  /// Wall-clock seconds of every finished phase: a table of replicate by level (or target
  /// density) for the main line, with the total over every line.
  static func phaseTimes(_ run: [String: Any]) -> String {
    let rows = Report.rows(run)
    guard !rows.isEmpty else { return "" }
    let reps = run["replicates_present"] as? [Int] ?? []
    var total = 0.0
    var cells: [[String]] = []
    for r in rows {
      let label =
        r["level"].map { "level \($0)" } ?? Report.double(r, "target_density").map {
          TickFormat.percent.text($0)
        } ?? "?"
      let per = r["per_replicate"] as? [[String: Any]] ?? []
      var line = [label]
      for k in reps {
        let s = per.first { $0["replicate"] as? Int == k }.flatMap { Report.double($0, "seconds") }
        line.append(s.map { String(format: "%.1f", $0) } ?? "-")
      }
      total += per.compactMap { Report.double($0, "seconds") }.reduce(0, +)
      for (_, b) in r["branches"] as? [String: Any] ?? [:] {
        total += ((b as? [String: Any])?["per_replicate"] as? [[String: Any]] ?? []).compactMap {
          Report.double($0, "seconds")
        }.reduce(0, +)
      }
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
