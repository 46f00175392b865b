import Analysis
import Foundation

/// `lth reproduce` folders (`reproduce_<hash>`, drawn from their `findings.json`): per
/// paper, one table of its claims with the paper's number, LotteryKit's stored reference
/// (with its date and machine), this run's number and its detail, the verdict (coloured)
/// and the tolerance.
public enum ReproduceSection: ReportSection {
  public static let kind = "reproduce"

  public static func html(_ runs: [RunResult], all: [RunResult]) -> String {
    runs.compactMap { if case .reproduce(let r) = $0 { r } else { nil } }.map(section).joined()
  }

  static func section(_ r: ReproductionResult) -> String {
    let e = escapeMarkup
    func num(_ v: Double?) -> String { v.map(ReproductionResult.format) ?? "-" }
    var o = "<section class=\"reproduce\" id=\"reproduce-\(e(r.paper))\">\n"
    o += "<h2>Findings: \(e(r.title))</h2>\n"
    let counts = Dictionary(grouping: r.findings, by: \.verdict).mapValues(\.count)
    let summary = [Finding.Verdict.holds, .differs, .tooFewReplicates, .movedToFull].compactMap { v in
      counts[v].map { "\($0) \(v.rawValue)" }
    }.joined(separator: ", ")
    o +=
      "<p class=\"meta\"><code>lth reproduce \(e(r.paper)) --scale \(e(r.scale.rawValue))\(r.dataset.map { " --dataset " + e($0) } ?? "")</code>: \(r.findings.count) findings (\(e(summary))); \(String(format: "%.0f", r.seconds)) s wall clock. Verdicts come from this run's replicates; the reference column is LotteryKit's stored number, shown and never used to decide.</p>\n"
    o +=
      "<table class=\"findings\"><thead><tr><th>finding</th><th>claim</th><th>paper</th><th>reference</th><th>this run</th><th>verdict</th><th>tolerance</th></tr></thead><tbody>\n"
    for f in r.findings {
      let colour: String
      switch f.verdict {
      case .holds: colour = "#d8f0d8"
      case .differs: colour = "#f6d5d5"
      case .tooFewReplicates, .movedToFull: colour = "#eeeeee"
      }
      let ref =
        f.referenceValue.map {
          "\(num($0.value)) (\(e($0.verdict.rawValue)); \(e($0.date)), \(e($0.machine)))"
        } ?? "-"
      o +=
        "<tr><td><code>\(e(f.id))</code></td><td>\(e(f.claim))</td><td>\(num(f.paperValue)) \(e(f.unit))<br><small>\(e(f.paperText))</small></td><td>\(ref)</td><td><b>\(num(f.lotterykitValue))</b> \(e(f.unit))<br><small>\(e(f.lotterykitDetail))</small></td><td style=\"background:\(colour)\">\(e(f.verdict.rawValue))</td><td><small>\(e(f.tolerance))</small></td></tr>\n"
    }
    return o + "</tbody></table>\n</section>\n"
  }
}
