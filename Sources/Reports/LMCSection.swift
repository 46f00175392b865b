import Analysis
import Experiments
import Foundation
import Training

/// Linear mode connectivity (`lmc_<hash>` runs): error along the interpolation path per
/// spawn step k (test, and train when evaluated; mean ± std over every replicate and
/// pair), and instability (the error barrier) against k with bands.
public enum LMCSection: ReportSection {
  public static let kind = "lmc"

  public static func html(_ runs: [RunResult], all: [RunResult]) -> String {
    let lmc = runs.compactMap { if case .lmc(let r) = $0 { r } else { nil } }
    return lmc.enumerated().map { section($0.element, index: $0.offset) }.joined() + bothModes(lmc)
  }

  /// Runs that differ only in the batch-norm mode along the path, drawn together: the
  /// test error barrier against k for each mode (the paper's text does not say which mode
  /// it used, so the report shows both when both were run).
  static func bothModes(_ runs: [LMCRunResults]) -> String {
    func key(_ r: LMCRunResults) -> JSONValue? {
      guard var o = r.record.hparams?.object else { return nil }
      o["bn"] = nil
      return .object(o)
    }
    var groups: [(JSONValue, [LMCRunResults])] = []
    for r in runs {
      guard let k = key(r) else { continue }
      if let i = groups.firstIndex(where: { $0.0 == k }) { groups[i].1.append(r) } else { groups.append((k, [r])) }
    }
    var o = ""
    for (_, group) in groups where Set(group.map(\.bn)).count > 1 {
      let e = escapeMarkup
      let series = group.enumerated().map { i, r in
        Series(
          "batch norm \(r.bn)", color: Palette.color(i), errorBars: true,
          points: r.spawnSteps.compactMap { s in
            s.testErrorBarrierMean.map {
              Point(x: Double(s.k), y: $0, spread: s.testErrorBarrierStd, note: "(\(s.curves.count) curves)")
            }
          })
      }
      o += "<section class=\"lmc-bn\">\n<h2>Instability with both batch-norm modes</h2>\n"
      o +=
        "<p class=\"meta\">The same experiment with batch-norm statistics \(e(group.map(\.bn).joined(separator: " and "))) along the path: <code>\(e(group.map { Report.folder($0.runDir) }.joined(separator: ", ")))</code>.</p>\n"
      o += Chart(
        title: "Test error barrier against the spawn step k, per batch-norm mode",
        x: Axis("spawn step k (iterations)"), y: Axis("test error barrier", format: .percent), series: series
      ).svg()
      o += "\n</section>\n"
    }
    return o
  }

  static func section(_ run: LMCRunResults, index: Int) -> String {
    let e = escapeMarkup
    let rows = run.spawnSteps
    var o = "<section class=\"lmc\" id=\"lmc-\(index)\">\n"
    o +=
      "<h2>Linear mode connectivity: \(e(Report.training(run.record, "model"))) on \(e(Report.training(run.record, "dataset")))</h2>\n"
    var what = "Dense network"
    if let m = run.maskRun {
      what =
        "\(run.randomMask ? "Random mask with the layer counts of" : "Subnetwork of") \(((m as NSString).lastPathComponent)) level \(run.maskLevel.map(String.init) ?? "?")"
    }
    o +=
      "<p class=\"meta\"><code>\(e(Report.folder(run.runDir)))</code>: \(e(what)); batch norm \(e(run.bn)); \(rows.count) spawn step\(rows.count == 1 ? "" : "s") with results.</p>\n"
    o += Report.unfinishedBanner(run.unfinished)
    if rows.isEmpty { return o + "<p>No spawn step has finished yet.</p></section>\n" }
    let paths: [(KeyPath<SpawnStepResult, [Double]>, KeyPath<SpawnStepResult, [Double?]>, String, String)] = [
      (\.testErrorMean, \.testErrorStd, "test error", "Test error"),
      (\.trainErrorMean, \.trainErrorStd, "train error", "Train error"),
    ]
    for (meanPath, stdPath, label, title) in paths {
      var series: [Series] = []
      for (i, r) in rows.enumerated() {
        let alpha = r.alpha
        let m = r[keyPath: meanPath]
        guard !m.isEmpty, m.count == alpha.count else { continue }
        let s = r[keyPath: stdPath]
        let n = r.curves.count
        let pts = alpha.indices.map { j in
          Point(x: alpha[j], y: m[j], spread: j < s.count ? s[j] : nil, note: "(\(n) curves)")
        }
        series.append(Series("k = \(r.k)", color: Palette.color(i), points: pts))
      }
      if series.isEmpty { continue }
      o += Chart(
        title: "\(title) along the linear path between two children", x: Axis("interpolation α"),
        y: Axis(label, format: .percent), series: series
      ).svg()
      o += "\n"
    }
    var barrier: [Series] = []
    let barriers: [(KeyPath<SpawnStepResult, Double?>, KeyPath<SpawnStepResult, Double?>, String)] = [
      (\.testErrorBarrierMean, \.testErrorBarrierStd, "test"),
      (\.trainErrorBarrierMean, \.trainErrorBarrierStd, "train"),
    ]
    for (i, (meanPath, stdPath, name)) in barriers.enumerated() {
      let pts = rows.compactMap { r -> Point? in
        guard let m = r[keyPath: meanPath] else { return nil }
        return Point(x: Double(r.k), y: m, spread: r[keyPath: stdPath], note: "(\(r.curves.count) curves)")
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
