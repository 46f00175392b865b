import Analysis
import Foundation

/// `lth speedup` folders (`speedup_<hash>`, drawn from their `speedup.json`): the Pareto
/// chart (final validation accuracy against wall clock, one marker per method or recipe
/// with its spread over replicates as an error bar, the frontier as a line, the baseline's
/// accuracy as the reference) and the time-to-accuracy table, with what was left out.
public enum SpeedupSection: ReportSection {
  public static let kind = "speedup"

  public static func html(_ runs: [RunResult], all: [RunResult]) -> String {
    runs.compactMap { if case .speedup(let r) = $0 { r } else { nil } }.map(section).joined()
  }

  /// The chart: one series per row (scatter), then the frontier.
  public static func chart(_ r: SpeedupResult) -> Chart {
    var series = r.rows.enumerated().map { i, row in
      Series(
        row.name, color: row.name == "baseline" ? Palette.reference : Palette.color(i), band: false,
        errorBars: true, line: false,
        points: [
          Point(
            x: row.wallClockMean, y: row.finalAccuracyMean, spread: row.finalAccuracyStd,
            note: "\(row.name): \(String(format: "%.2f", row.finalAccuracyMean * 100))% in \(String(format: "%.1f", row.wallClockMean)) s",
            partial: row.reached < row.replicates)
        ])
    }
    let frontier = r.rows.filter(\.pareto).sorted { $0.wallClockMean < $1.wallClockMean }
    series.append(
      Series(
        "Pareto frontier", color: Palette.reference, dashed: true, band: false, markers: false,
        points: frontier.map { Point(x: $0.wallClockMean, y: $0.finalAccuracyMean) }))
    return Chart(
      title: "Final validation accuracy against wall clock (\(r.model), \(r.dataset), \(r.scale.rawValue))",
      x: Axis("wall clock (s, mean over replicates)"), y: Axis("validation accuracy", format: .percent),
      series: series, references: [Reference(y: r.targetAccuracy, label: "baseline")],
      // Tall enough for one legend line per row (a study has up to 21 rows).
      height: max(360, 18 * Double(series.count + 1) + 60))
  }

  static func section(_ r: SpeedupResult) -> String {
    let e = escapeMarkup
    func f(_ v: Double?, _ d: Int = 2) -> String { v.map { String(format: "%.\(d)f", $0) } ?? "-" }
    var o = "<section class=\"speedup\" id=\"speedup-\(e(r.model))-\(e(r.dataset))\">\n"
    o += "<h2>Speed-up methods: \(e(r.model)) on \(e(r.dataset))</h2>\n"
    o +=
      "<p class=\"meta\"><code>lth speedup --model \(e(r.model)) --dataset \(e(r.dataset)) --scale \(e(r.scale.rawValue))</code>. Target: the baseline's final validation accuracy, \(f(r.targetAccuracy * 100))%. Time to accuracy is wall clock to the first validation evaluation at or above it; a speed-up is real only when every replicate gets there and mean ± 2 std/√n excludes 1. Hollow markers: not every replicate reached the target. Accuracies are on the validation split, never the test set.</p>\n"
    o += chart(r).svg() + "\n"
    o +=
      "<table class=\"speedup\"><thead><tr><th>method</th><th>val acc %</th><th>wall s</th><th>acc at baseline time %</th><th>time to target s</th><th>speed-up</th><th>interval</th><th>real</th><th>Pareto</th></tr></thead><tbody>\n"
    for row in r.rows {
      let speed =
        f(row.timeToAccuracySpeedup) + (row.reached < row.replicates ? " (\(row.reached)/\(row.replicates))" : "")
      let interval = row.timeToAccuracySpeedupLow.map { "[\(f($0)), \(f(row.timeToAccuracySpeedupHigh))]" } ?? "-"
      o +=
        "<tr><td><code>\(e(row.name))</code><br><small>\(e(row.algorithms ?? ""))</small></td><td>\(f(row.finalAccuracyMean * 100))\(row.finalAccuracyStd.map { " ± " + f($0 * 100) } ?? "")</td><td>\(f(row.wallClockMean, 1))</td><td>\(f(row.accuracyAtBaselineTimeMean * 100))</td><td>\(f(row.timeToAccuracyMean, 1))</td><td>\(speed)</td><td>\(interval)</td><td>\(row.real ? "yes" : "no")</td><td>\(row.pareto ? "★" : "")</td></tr>\n"
    }
    o += "</tbody></table>\n"
    if !r.leftOut.isEmpty {
      o +=
        "<p class=\"meta\">Left out (they do not fit \(e(r.model))): "
        + r.leftOut.keys.sorted().map { "<code>\(e($0))</code>: \(e(r.leftOut[$0]!))" }.joined(separator: "; ")
        + "</p>\n"
    }
    return o + "</section>\n"
  }
}
