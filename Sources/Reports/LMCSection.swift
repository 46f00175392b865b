import Analysis
import Experiments
import Foundation

/// Linear mode connectivity (`lmc_<hash>` runs): error along the interpolation path per
/// spawn step k (test, and train when evaluated; mean ± std over every replicate and
/// pair), and instability (the error barrier) against k with bands.
public enum LMCSection: ReportSection {
  public static let kind = "lmc"

  public static func html(_ runs: [[String: Any]], all: [[String: Any]]) -> String {
    runs.enumerated().map { section($0.element, index: $0.offset) }.joined()
  }

  static func section(_ run: [String: Any], index: Int) -> String {
    let e = escapeMarkup
    let rows = run["spawn_steps"] as? [[String: Any]] ?? []
    let t = Report.training(run)
    var o = "<section class=\"lmc\" id=\"lmc-\(index)\">\n"
    o +=
      "<h2>Linear mode connectivity: \(e(t["model"] as? String ?? "?")) on \(e(t["dataset"] as? String ?? "?"))</h2>\n"
    var what = "Dense network"
    if let m = run["mask_run"] as? String {
      what =
        "\(run["random_mask"] as? Bool == true ? "Random mask with the layer counts of" : "Subnetwork of") \(((m as NSString).lastPathComponent)) level \(run["mask_level"] ?? "?")"
    }
    o +=
      "<p class=\"meta\"><code>\(e(Report.folder(run)))</code>: \(e(what)); batch norm \(e(run["bn"] as? String ?? "?")); \(rows.count) spawn step\(rows.count == 1 ? "" : "s") with results.</p>\n"
    o += Report.unfinishedBanner(run)
    if rows.isEmpty { return o + "<p>No spawn step has finished yet.</p></section>\n" }
    for (split, label, title) in [
      ("test", "test error", "Test error"), ("train", "train error", "Train error"),
    ] {
      var series: [Series] = []
      for (i, r) in rows.enumerated() {
        let alpha = r["alpha"] as? [Double] ?? []
        let m = r["\(split)_error_mean"] as? [Double] ?? []
        guard !m.isEmpty, m.count == alpha.count else { continue }
        let s = r["\(split)_error_std"] as? [Any] ?? []
        let n = (r["curves"] as? [Any])?.count ?? 0
        let pts = alpha.indices.map { j in
          Point(x: alpha[j], y: m[j], spread: j < s.count ? s[j] as? Double : nil, note: "(\(n) curves)")
        }
        series.append(Series("k = \(r["k"] ?? "?")", color: Palette.color(i), points: pts))
      }
      if series.isEmpty { continue }
      o += Chart(
        title: "\(title) along the linear path between two children", x: Axis("interpolation α"),
        y: Axis(label, format: .percent), series: series
      ).svg()
      o += "\n"
    }
    var barrier: [Series] = []
    for (i, (key, name)) in [("test_error_barrier", "test"), ("train_error_barrier", "train")].enumerated() {
      let pts = rows.compactMap { r -> Point? in
        guard let k = r["k"] as? Int, let m = Report.double(r, key + "_mean") else { return nil }
        return Point(
          x: Double(k), y: m, spread: Report.double(r, key + "_std"),
          note: "(\((r["curves"] as? [Any])?.count ?? 0) curves)")
      }
      barrier.append(Series("\(name) instability", color: Palette.color(i), errorBars: true, points: pts))
    }
    o += Chart(
      title: "Instability (error barrier) against the spawn step k", x: Axis("spawn step k (iterations)"),
      y: Axis("error barrier", format: .percent), series: barrier
    ).svg()
    o += "\n<pre>\(e(LMCResults.table(run)))</pre>\n"
    return o + "</section>\n"
  }
}
