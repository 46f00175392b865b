import Experiments
import Foundation

/// `lth results RUN_DIR... --csv`: one row per (run, replicate, level or target density or
/// spawn step k, pair, branch, metric), from the same result objects as `--json`, for
/// people who plot in pandas or R.
///
/// Columns: `run,kind,replicate,level,target_density,k,pair,branch,metric,value`; a column
/// that does not apply to a row is empty. Metrics: `density`, `effective_density`,
/// `test_accuracy`, `best_test_accuracy`, `early_stop_step` and `seconds` for lottery and
/// prune-init runs; `test_error_barrier`, `train_error_barrier` and `test_loss_barrier` per
/// (replicate, pair) curve and `endpoint_test_accuracy` for mode-connectivity runs.
public enum TidyCSV {
  public static let header = "run,kind,replicate,level,target_density,k,pair,branch,metric,value"
  static let rowMetrics = [
    "density", "effective_density", "test_accuracy", "best_test_accuracy", "early_stop_step", "seconds",
  ]

  public static func text(_ runs: [[String: Any]]) -> String {
    var out = [header]
    func field(_ v: Any?) -> String {
      switch v {
      case nil, is NSNull: return ""
      // Int first: JSON's whole numbers (replicates, levels, steps) print without ".0".
      case let i as Int: return "\(i)"
      case let d as Double: return "\(d)"
      case let s as String:
        return s.contains(where: { ",\"\n\r".contains($0) })
          ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
      default: return field("\(v!)")
      }
    }
    func row(
      _ run: String, _ kind: String, _ rep: Any?, level: Any? = nil, target: Any? = nil, k: Any? = nil,
      pair: Any? = nil, branch: String, metric: String, value: Any?
    ) {
      guard let value, !(value is NSNull) else { return }
      out.append(
        [
          run, kind, field(rep), field(level), field(target), field(k), field(pair), field(branch), metric,
          field(value),
        ]
        .joined(separator: ","))
    }
    for run in runs {
      let name = field(run["run_dir"] as? String ?? "")
      let kind = run["kind"] as? String ?? ""
      if kind == "lmc" {
        for r in run["spawn_steps"] as? [[String: Any]] ?? [] {
          for c in r["curves"] as? [[String: Any]] ?? [] {
            for m in ["test_error_barrier", "train_error_barrier", "test_loss_barrier"] {
              row(
                name, kind, c["replicate"], k: r["k"], pair: c["pair"], branch: "main", metric: m, value: c[m]
              )
            }
          }
          let reps = r["endpoint_replicates"] as? [Int] ?? []
          for (i, v) in (r["endpoint_test_accuracy_values"] as? [Double] ?? []).enumerated() {
            row(
              name, kind, i < reps.count ? reps[i] : nil, k: r["k"], branch: "main",
              metric: "endpoint_test_accuracy",
              value: v)
          }
        }
        continue
      }
      for r in Report.rows(run) {
        var lines: [(String, [String: Any])] = [("main", r)]
        for (b, o) in (r["branches"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
          if let o = o as? [String: Any] { lines.append((b, o)) }
        }
        for (branch, o) in lines {
          for p in o["per_replicate"] as? [[String: Any]] ?? [] {
            for m in rowMetrics {
              row(
                name, kind, p["replicate"], level: r["level"], target: r["target_density"], branch: branch,
                metric: m,
                value: p[m])
            }
          }
        }
      }
    }
    return out.joined(separator: "\n") + "\n"
  }
}
