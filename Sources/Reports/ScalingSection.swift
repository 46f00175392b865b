import Analysis
import Foundation

/// Scaling sweeps (`scaling_<hash>`, drawn from their `fit.json`): error against density on
/// log-log axes with the fitted law per configuration (one chart per data fraction),
/// predicted against measured error with held-out configurations marked, the relative
/// residuals against density, and the parameters with the fit quality beside the
/// seed-to-seed noise.
public enum ScalingSection: ReportSection {
  public static let kind = "scaling"

  public static func html(_ runs: [RunResult], all: [RunResult]) -> String {
    runs.compactMap { if case .scaling(let f) = $0 { f } else { nil } }.enumerated().map {
      section($0.element, index: $0.offset)
    }.joined()
  }

  static func pct(_ v: Double?) -> String { v.map { String(format: "%.2f%%", $0 * 100) } ?? "-" }

  static func section(_ fit: ScalingFitResult, index: Int) -> String {
    let e = escapeMarkup
    var o = "<section class=\"scaling\" id=\"scaling-\(index)\">\n"
    o += "<h2>Scaling law: \(e(fit.family))</h2>\n"
    o += "<p class=\"meta\"><code>\(e(Report.folder(fit.runDir ?? fit.sweep ?? "run")))</code>"
    if let err = fit.error {
      return o + "</p>\n<p class=\"warn\">No fit yet: \(e(err))</p>\n</section>\n"
    }
    let points = fit.points ?? []
    let configs = fit.configurations ?? []
    let joint = fit.mode == "joint"
    o +=
      ": \(configs.count) configurations, \(points.count) points, \(joint ? "joint law across configurations" : "one law per configuration"); seed-to-seed noise \(pct(fit.seedNoise)).</p>\n"
    for w in fit.warnings ?? [] { o += "<p class=\"warn\">Warning: \(e(w))</p>\n" }
    if let m = fit.unfinishedConfigurations, !m.isEmpty {
      o +=
        "<p class=\"warn unfinished\">Not in the fit yet (level 0 unfinished): \(e(m.joined(separator: "; ")))</p>\n"
    }
    let jointLaw = joint ? fit.jointLaw : nil
    let minDensity = points.map(\.density).min() ?? 0.01
    let all = Array(Set(points.map(\.configuration))).sorted()
    // One colour per (depth, width), the same in every data fraction's chart.
    let shapes = Array(Set(all.map { [$0.depth, $0.width] })).sorted { ($0[0], $0[1]) < ($1[0], $1[1]) }
    let colour = Dictionary(
      uniqueKeysWithValues: all.map { c in (c, Palette.color(shapes.firstIndex(of: [c.depth, c.width])!)) })

    // Error against density, one chart per data fraction.
    for n in Array(Set(all.map(\.data))).sorted(by: >) {
      var series: [Series] = []
      for c in all where c.data == n {
        let mine = points.filter { $0.configuration == c }
        guard let eNP = mine.first?.eNP else { continue }
        let held = mine.first?.heldOut == true
        let name = "l=\(ScalingFit.text(c.depth)) w=\(ScalingFit.text(c.width))\(held ? " (held out)" : "")"
        series.append(
          Series(
            name, color: colour[c]!, band: false, line: false,
            points: mine.map {
              Point(x: $0.density, y: $0.error, note: "(\($0.replicateErrors.count) replicates)")
            }))
        let law = jointLaw ?? configs.first { $0.configuration == c }?.parameters?.law
        if let law {
          let curve = (0...48).map { k -> Point in
            let d = exp(log(minDensity) * Double(k) / 48)
            return Point(x: d, y: law.error(eNP: eNP, density: d, depth: c.depth, width: c.width))
          }
          series.append(
            Series(name + " law", color: colour[c]!, dashed: held, band: false, markers: false, points: curve)
          )
        }
      }
      o += Chart(
        title:
          "Test error against density, data fraction \(ScalingFit.text(n)): measured (markers) and fitted (lines)",
        x: .density(), y: Axis("test error", kind: .log, format: .percent), series: series, width: 820,
        height: 400
      ).svg()
      o += "\n"
    }

    // Predicted against measured.
    var fitted: [Point] = []
    var heldOut: [Point] = []
    for p in points {
      guard let pred = p.predicted else { continue }
      let pt = Point(x: p.error, y: pred, note: "\(p.configuration.label) d \(TickFormat.percent.text(p.density))")
      if p.heldOut { heldOut.append(pt) } else { fitted.append(pt) }
    }
    if !fitted.isEmpty {
      let values = (fitted + heldOut).flatMap { [$0.x, $0.y] }
      let (lo, hi) = (values.min()!, values.max()!)
      var series = [
        Series("fitted configurations", color: Palette.color(0), band: false, line: false, points: fitted)
      ]
      if !heldOut.isEmpty {
        series.append(Series("held out", color: Palette.color(1), band: false, line: false, points: heldOut))
      }
      series.append(
        Series(
          "predicted = measured", color: Palette.reference, dashed: true, band: false, markers: false,
          points: [Point(x: lo, y: lo), Point(x: hi, y: hi)]))
      o += Chart(
        title: "Predicted against measured test error",
        x: Axis("measured error", kind: .log, format: .percent),
        y: Axis("predicted error", kind: .log, format: .percent), series: series, width: 620, height: 420
      ).svg()
      o += "\n"
      var residuals: [Series] = []
      for c in all {
        let pts = points.filter { $0.configuration == c }.compactMap { p -> Point? in
          p.relativeDeviation.map { Point(x: p.density, y: $0, note: c.label) }
        }
        if !pts.isEmpty {
          residuals.append(
            Series(
              c.label, color: colour[c]!, dashed: c.data != all.map(\.data).max(), band: false, points: pts))
        }
      }
      o += Chart(
        title: "Relative deviation (predicted - measured) / measured against density", x: .density(),
        y: Axis("relative deviation", format: .percent), series: residuals,
        references: [Reference(y: 0, label: "0")], width: 820, height: 360
      ).svg()
      o += "\n"
    }

    // Parameters and quality.
    var facts: [[String]] = []
    if joint, case .joint(let p) = fit.parameters {
      for k in ["e_up", "gamma", "p", "phi", "psi"] {
        guard let v = p[k] else { continue }
        let std = v.std.map { String(format: " ± %.3g", $0) } ?? ""
        facts.append([k, String(format: "%.4g", v.value) + std + (v.fitted ? "" : " (not fitted)")])
      }
    }
    facts.append(["mean relative deviation (mu)", pct(fit.meanRelativeDeviation)])
    facts.append(["mean |relative deviation|", pct(fit.meanAbsRelativeDeviation)])
    facts.append(["std of relative deviation (sigma)", pct(fit.stdRelativeDeviation)])
    facts.append([
      "single fits: mu, mean |dev|, sigma",
      "\(pct(fit.singleMeanRelativeDeviation)), \(pct(fit.singleMeanAbsRelativeDeviation)), \(pct(fit.singleStdRelativeDeviation))",
    ])
    facts.append(["seed-to-seed noise", pct(fit.seedNoise)])
    if let h = fit.holdout {
      facts.append([
        "held out (\(h.text))",
        "mean |relative error| \(pct(h.meanRelativeError)), std \(pct(h.stdRelativeError))",
      ])
    }
    o += "<h3>Fit</h3>\n" + Report.table(["", ""], facts.map(Report.plain), nameColumns: 2)
    var rows: [[String]] = []
    for c in configs {
      func v(_ k: String) -> String {
        guard let o = c.parameters?[k] else { return "-" }
        return String(format: "%.4g", o.value) + (o.std.map { String(format: " ± %.2g", $0) } ?? "")
      }
      rows.append([
        c.label, String(format: "%.4f", c.eNP), v("e_up"), v("gamma"), v("p"), pct(c.meanAbsRelativeDeviation),
        c.heldOut ? "yes" : "",
      ])
    }
    o += "<h3>One law per configuration</h3>\n"
    o += Report.table(
      ["configuration", "e_np", "e_up", "gamma", "p", "mean |dev|", "held out"], rows.map(Report.plain))
    return o + "</section>\n"
  }
}
