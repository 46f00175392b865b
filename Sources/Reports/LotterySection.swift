import Experiments
import Foundation

/// A lottery run (`lottery_<hash>`): test accuracy against density (main line and every
/// branch, mean ± std bands, the dense accuracy as a reference line, and the main line at
/// its effective density when recorded), early-stopping iteration against density, a
/// per-level table, per-layer density as a shaded table, and learning curves per level as
/// small multiples.
public enum LotterySection: ReportSection {
  public static let kind = "lottery"

  public static func html(_ runs: [RunResult], all: [RunResult]) -> String {
    runs.compactMap(\.rowsResult).enumerated().map { section($0.element, index: $0.offset) }.joined()
  }

  /// Branch column names in a stable order.
  static func branchNames(_ rows: [ResultRow]) -> [String] {
    Array(Set(rows.flatMap { ($0.branches ?? [:]).keys })).sorted()
  }

  /// One series per line of the run: `main` first, then each branch, with `value` of a row.
  static func lines(
    _ run: RunResults, value: (_ row: ResultRow) -> (y: Double, spread: Double?)?
  ) -> [Series] {
    let rows = run.rows
    var out: [Series] = []
    let names = ["main"] + branchNames(rows)
    for (i, name) in names.enumerated() {
      var pts: [Point] = []
      for r in rows {
        let o = name == "main" ? r : r.branches?[name]
        guard let o, let x = o.density, let v = value(o) else { continue }
        let (partial, note) = Report.partialNote(o, run)
        let where_ = r.level.map { "level \($0)" } ?? ""
        pts.append(Point(x: x, y: v.y, spread: v.spread, note: "\(where_) \(note)", partial: partial))
      }
      out.append(Series(name == "main" ? "IMP (main)" : name, color: Palette.color(i), points: pts))
    }
    return out
  }

  static func section(_ run: RunResults, index: Int) -> String {
    let e = escapeMarkup
    let rows = run.rows
    let h = run.record.hparams
    let p = h?["pruning"]
    func training(_ key: String) -> String { Report.training(run.record, key) }
    var o = "<section class=\"lottery\" id=\"lottery-\(index)\">\n"
    o += "<h2>Lottery ticket: \(e(training("model"))) on \(e(training("dataset")))</h2>\n"
    let reps = run.replicatesPresent.count
    o +=
      "<p class=\"meta\"><code>\(e(Report.folder(run.runDir)))</code>: \(e(p?["strategy"]?.string ?? "?")) pruning of \(e(TickFormat.percent.text(p?["fraction"]?.double ?? 0))) per level, \(e(h?["retrain"]?.string ?? "?")) to \(e(h?["rewind_step"]?.string ?? "?")), \(training("training_steps")) per level; \(rows.count) level\(rows.count == 1 ? "" : "s") with results, \(reps) replicate\(reps == 1 ? "" : "s").</p>\n"
    o += Report.unfinishedBanner(run.unfinished)
    if rows.isEmpty { return o + "<p>No level has finished yet.</p></section>\n" }

    // Accuracy against density.
    var acc = lines(run) { r in r.testAccuracyMean.map { ($0, r.testAccuracyStd) } }
    let effective = rows.compactMap { r -> Point? in
      guard let d = r.effectiveDensity, let y = r.testAccuracyMean else { return nil }
      return Point(x: d, y: y, note: "level \(r.level.map(String.init) ?? "?") (effective density)")
    }
    // Drawn only where it differs from the nominal density (disconnected units counted).
    let differs = rows.contains { r in
      guard let a = r.effectiveDensity, let b = r.density else { return false }
      return abs(a - b) > 1e-9 * max(a, b)
    }
    if differs {
      acc.append(
        Series(
          "IMP at effective density", color: Palette.color(0), dashed: true, band: false, points: effective))
    }
    var refs: [Reference] = []
    if let dense = rows.first(where: { $0.level == 0 }), let a = dense.testAccuracyMean {
      refs.append(Reference(y: a, label: "dense (level 0)"))
    }
    o += Chart(
      title: "Test accuracy against density", x: .density(), y: Axis("test accuracy", format: .percent),
      series: acc,
      references: refs
    ).svg()
    o += "\n"

    // Early stopping.
    let early = lines(run) { r in r.earlyStopStepMean.map { ($0, nil) } }
    if !early.allSatisfy({ $0.points.isEmpty }) {
      o += Chart(
        title: "Early-stopping iteration (minimum validation loss) against density", x: .density(),
        y: Axis("iteration"),
        series: early.map {
          var s = $0
          s.band = false
          return s
        }
      ).svg()
      o += "\n"
    } else {
      o +=
        "<p class=\"note\">No early-stopping iterations: the run has no validation split (<code>--validation-size</code>).</p>\n"
    }

    // The level table.
    let names = branchNames(rows)
    var header = ["level", "density", "effective", "test acc", "early stop", "acc at stop", "reps", "s / run"]
    header += names.map { $0 + " acc" }
    var cells: [[(text: String, background: String?)]] = []
    func pm(_ o: ResultRow?) -> String {
      guard let o, let m = o.testAccuracyMean else { return "-" }
      return o.testAccuracyStd.map { String(format: "%.2f ± %.2f", m * 100, $0 * 100) }
        ?? String(format: "%.2f", m * 100)
    }
    for r in rows {
      func number(_ v: Double?, _ format: String, scale: Double = 1) -> String {
        v.map { String(format: format, $0 * scale) } ?? "-"
      }
      func percent(_ v: Double?) -> String { v.map { TickFormat.percent.text($0) } ?? "-" }
      var c: [String] = [r.level.map(String.init) ?? "?", percent(r.density), percent(r.effectiveDensity), pm(r)]
      c.append(number(r.earlyStopStepMean, "%.0f"))
      c.append(Results.pm(r.earlyStopTestAccuracyMean, r.earlyStopTestAccuracyStd))
      c.append("\(r.replicates)")
      c.append(number(r.secondsMean, "%.1f"))
      c += names.map { pm(r.branches?[$0]) }
      cells.append(Report.plain(c))
    }
    o += "<h3>Levels</h3>\n" + Report.table(header, cells)

    // Per-layer density, shaded like a heat map.
    let layerNames = (rows.first?.layers ?? []).map(\.name)
    if !layerNames.isEmpty {
      var lc: [[(text: String, background: String?)]] = []
      for r in rows {
        var row: [(text: String, background: String?)] = [(r.level.map(String.init) ?? "?", nil)]
        for n in layerNames {
          if let d = r.layers.first(where: { $0.name == n })?.density {
            row.append((TickFormat.percent.text(d), heat(d)))
          } else {
            row.append(("-", nil))
          }
        }
        lc.append(row)
      }
      o += "<h3>Density per layer (main line, mean over replicates)</h3>\n"
      o += Report.table(["level"] + layerNames, lc)
    }

    // Learning curves: small multiples, one per level, on shared axes.
    var multiples = ""
    var panels: [(String, [Series])] = []
    for r in rows {
      var series: [Series] = []
      for (i, name) in (["main"] + names).enumerated() {
        let obj = name == "main" ? r : r.branches?[name]
        guard let c = obj?.learningCurve, c.step.count == c.testAccuracyMean.count, !c.step.isEmpty
        else { continue }
        let (steps, ys) = (c.step, c.testAccuracyMean)
        let pts = zip(steps, ys).map { Point(x: Double($0), y: $1) }
        series.append(
          Series(name == "main" ? "IMP (main)" : name, color: Palette.color(i), band: false, points: pts))
      }
      guard !series.isEmpty else { continue }
      panels.append(
        ("level \(r.level.map(String.init) ?? "?") (\(TickFormat.percent.text(r.density ?? 1)))", series))
    }
    let all = panels.flatMap { $0.1.flatMap(\.points) }
    if let x0 = all.map(\.x).min(), let x1 = all.map(\.x).max(), let y0 = all.map(\.y).min(),
      let y1 = all.map(\.y).max()
    {
      let (xd, yd) = (Scale.niceLinear(x0, x1, target: 3), Scale.niceLinear(y0, y1, target: 3))
      for (title, series) in panels {
        multiples +=
          Chart(
            title: title, x: Axis("step", domain: xd), y: Axis("test acc", format: .percent, domain: yd),
            series: series, width: 250, height: 170, legend: false
          ).svg()
      }
    }
    if !multiples.isEmpty {
      o += "<h3>Learning curves (test accuracy against step, mean over replicates)</h3>\n"
      o += "<p class=\"legend-row\">"
      for (i, name) in (["IMP (main)"] + names).enumerated() {
        o += "<span><span class=\"swatch\" style=\"background:\(Palette.color(i))\"></span>\(e(name))</span>"
      }
      o += "</p>\n<div class=\"multiples\">\(multiples)</div>\n"
    }
    return o + "</section>\n"
  }

  /// A blue whose strength is the density (white at 0, the palette's blue at 1).
  static func heat(_ d: Double) -> String {
    let t = max(0, min(1, d))
    let (r, g, b) = (255 - (255 - 0) * t * 0.75, 255 - (255 - 114) * t * 0.75, 255 - (255 - 178) * t * 0.75)
    return String(format: "#%02x%02x%02x", Int(r.rounded()), Int(g.rounded()), Int(b.rounded()))
  }
}
