import Experiments
import Foundation

/// `lth results RUN_DIR... --csv`: one row per (run, replicate, level or target density or
/// spawn step k, pair, branch, metric), from the same result objects as `--json`, for
/// people who plot in pandas or R.
///
/// Columns: `run,kind,replicate,level,target_density,k,pair,branch,metric,value`; a column
/// that does not apply to a row is empty. Metrics: `density`, `effective_density`,
/// `test_accuracy`, `early_stop_step`, `early_stop_test_accuracy` and `seconds` for lottery and
/// prune-init runs; `test_error_barrier`, `train_error_barrier` and `test_loss_barrier` per
/// (replicate, pair) curve and `endpoint_test_accuracy` for mode-connectivity runs.
public enum TidyCSV {
  public static let header = "run,kind,replicate,level,target_density,k,pair,branch,metric,value"
  static let rowMetrics = [
    "density", "effective_density", "test_accuracy", "early_stop_step", "early_stop_test_accuracy", "seconds",
  ]

  public static func text(_ runs: [RunResult]) -> String {
    var out = [header]
    func field(_ s: String) -> String {
      s.contains(where: { ",\"\n\r".contains($0) }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
    func text<T>(_ v: T?) -> String { v.map { field("\($0)") } ?? "" }
    func row(
      _ run: String, _ kind: String, _ rep: Int?, level: Int? = nil, target: Double? = nil, k: Int? = nil,
      pair: String? = nil, branch: String, metric: String, value: Double?
    ) {
      guard let value else { return }
      out.append(
        [run, kind, text(rep), text(level), text(target), text(k), text(pair), field(branch), metric, "\(value)"]
          .joined(separator: ","))
    }
    for run in runs {
      let name = field(run.runDir)
      switch run {
      case .lmc(let l):
        for r in l.spawnSteps {
          for c in r.curves {
            for (m, v) in [
              ("test_error_barrier", c.testErrorBarrier), ("train_error_barrier", c.trainErrorBarrier),
              ("test_loss_barrier", c.testLossBarrier),
            ] {
              row(name, l.kind, c.replicate, k: r.k, pair: c.pair, branch: "main", metric: m, value: v)
            }
          }
          let reps = r.endpointReplicates
          for (i, v) in r.endpointTestAccuracyValues.enumerated() {
            row(
              name, l.kind, i < reps.count ? reps[i] : nil, k: r.k, branch: "main", metric: "endpoint_test_accuracy",
              value: v)
          }
        }
      case .rows(let run):
        for r in run.rows {
          for (branch, o) in r.lines {
            for p in o.perReplicate {
              let values: [String: Double?] = [
                "density": p.density, "effective_density": p.effectiveDensity, "test_accuracy": p.testAccuracy,
                "early_stop_test_accuracy": p.earlyStopTestAccuracy, "early_stop_step": p.earlyStopStep.map(Double.init),
                "seconds": p.seconds,
              ]
              for m in rowMetrics {
                row(
                  name, run.kind, p.replicate, level: r.level, target: r.targetDensity, branch: branch, metric: m,
                  value: values[m] ?? nil)
              }
            }
          }
        }
      case .speedup(let st):
        // One line per method and measure (means over replicates); branch = the method.
        for r in st.rows {
          for (m, v) in [
            ("final_validation_accuracy", r.finalAccuracyMean), ("wall_clock", r.wallClockMean),
            ("time_to_accuracy", r.timeToAccuracyMean), ("time_to_accuracy_speedup", r.timeToAccuracySpeedup),
          ] {
            row(name, st.kind, nil, branch: r.name, metric: m, value: v)
          }
        }
      case .scaling, .reproduce: continue
      }
    }
    return out.joined(separator: "\n") + "\n"
  }
}
