import Analysis
import Foundation

/// Scaling sweeps (`scaling_<hash>`, drawn from their `fit.json`): error against density on
/// log-log axes with the fitted law per configuration (one chart per data fraction),
/// predicted against measured error with held-out configurations marked, the relative
/// residuals against density, and the parameters with the fit quality beside the
/// seed-to-seed noise.
public enum ScalingSection: ReportSection {
  public static let kind = "scaling"

  public static func html(_ runs: [[String: Any]], all: [[String: Any]]) -> String {
    runs.enumerated().map { section($0.element, index: $0.offset) }.joined()
  }

  static func pct(_ v: Any?) -> String { (v as? Double).map { String(format: "%.2f%%", $0 * 100) } ?? "-" }

  static func section(_ fit: [String: Any], index: Int) -> String {
    let e = escapeMarkup
    var o = "<section class=\"scaling\" id=\"scaling-\(index)\">\n"
    o += "<h2>Scaling law: \(e(fit["family"] as? String ?? "?"))</h2>\n"
    o += "<p class=\"meta\"><code>\(e(Report.folder(fit)))</code>"
    if let err = fit["error"] as? String {
      return o + "</p>\n<p class=\"warn\">No fit yet: \(e(err))</p>\n</section>\n"
    }
    let points = fit["points"] as? [[String: Any]] ?? []
    let configs = fit["configurations"] as? [[String: Any]] ?? []
    let joint = fit["mode"] as? String == "joint"
    o +=
      ": \(configs.count) configurations, \(points.count) points, \(joint ? "joint law across configurations" : "one law per configuration"); seed-to-seed noise \(pct(fit["seed_noise"])).</p>\n"
    if let m = fit["unfinished_configurations"] as? [String], !m.isEmpty {
      o +=
        "<p class=\"warn unfinished\">Not in the fit yet (level 0 unfinished): \(e(m.joined(separator: "; ")))</p>\n"
    }
    func config(_ p: [String: Any]) -> Configuration {
      Configuration(
        depth: p["depth"] as? Double ?? 0, width: p["width_factor"] as? Double ?? 0,
        data: p["data_fraction"] as? Double ?? 0)
    }
    let jointLaw = joint ? ScalingAnalysis.law(from: fit["parameters"] as? [String: Any] ?? [:]) : nil
    let minDensity = points.compactMap { $0["density"] as? Double }.min() ?? 0.01
    let all = Array(Set(points.map(config))).sorted()
    // One colour per (depth, width), the same in every data fraction's chart.
    let shapes = Array(Set(all.map { [$0.depth, $0.width] })).sorted { ($0[0], $0[1]) < ($1[0], $1[1]) }
    let colour = Dictionary(
      uniqueKeysWithValues: all.map { c in (c, Palette.color(shapes.firstIndex(of: [c.depth, c.width])!)) })

    // Error against density, one chart per data fraction.
    for n in Array(Set(all.map(\.data))).sorted(by: >) {
      var series: [Series] = []
      for c in all where c.data == n {
        let mine = points.filter { config($0) == c }
        guard let eNP = mine.first?["e_np"] as? Double else { continue }
        let held = mine.first?["held_out"] as? Bool == true
        let name = "l=\(ScalingFit.text(c.depth)) w=\(ScalingFit.text(c.width))\(held ? " (held out)" : "")"
        series.append(
          Series(
            name, color: colour[c]!, band: false, line: false,
            points: mine.map {
              Point(
                x: $0["density"] as! Double, y: $0["error"] as! Double,
                note: "(\(($0["replicate_errors"] as? [Any])?.count ?? 0) replicates)")
            }))
        let law =
          jointLaw
          ?? (configs.first { config($0) == c }?["parameters"] as? [String: Any]).flatMap(
            ScalingAnalysis.law(from:))
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
      guard let pred = p["predicted"] as? Double, let err = p["error"] as? Double else { continue }
      let c = config(p)
      let pt = Point(
        x: err, y: pred, note: "\(c.label) d \(TickFormat.percent.text(p["density"] as? Double ?? 0))")
      if p["held_out"] as? Bool == true { heldOut.append(pt) } else { fitted.append(pt) }
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
        let pts = points.filter { config($0) == c }.compactMap { p -> Point? in
          guard let r = p["relative_deviation"] as? Double, let d = p["density"] as? Double else {
            return nil
          }
          return Point(x: d, y: r, note: c.label)
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
    if joint, let p = fit["parameters"] as? [String: Any] {
      for k in ["e_up", "gamma", "p", "phi", "psi"] {
        guard let v = p[k] as? [String: Any], let value = v["value"] as? Double else { continue }
        let std = (v["std"] as? Double).map { String(format: " ± %.3g", $0) } ?? ""
        facts.append([
          k, String(format: "%.4g", value) + std + (v["fitted"] as? Bool == false ? " (not fitted)" : ""),
        ])
      }
    }
    facts.append(["mean relative deviation (mu)", pct(fit["mean_relative_deviation"])])
    facts.append(["mean |relative deviation|", pct(fit["mean_abs_relative_deviation"])])
    facts.append(["std of relative deviation (sigma)", pct(fit["std_relative_deviation"])])
    facts.append([
      "single fits: mu, mean |dev|, sigma",
      "\(pct(fit["single_mean_relative_deviation"])), \(pct(fit["single_mean_abs_relative_deviation"])), \(pct(fit["single_std_relative_deviation"]))",
    ])
    facts.append(["seed-to-seed noise", pct(fit["seed_noise"])])
    if let h = fit["holdout"] as? String {
      facts.append([
        "held out (\(h))",
        "mean |relative error| \(pct(fit["holdout_mean_relative_error"])), std \(pct(fit["holdout_std_relative_error"]))",
      ])
    }
    o += "<h3>Fit</h3>\n" + Report.table(["", ""], facts.map(Report.plain), nameColumns: 2)
    var rows: [[String]] = []
    for c in configs {
      let p = c["parameters"] as? [String: Any] ?? [:]
      func v(_ k: String) -> String {
        guard let o = p[k] as? [String: Any], let x = o["value"] as? Double else { return "-" }
        return String(format: "%.4g", x) + ((o["std"] as? Double).map { String(format: " ± %.2g", $0) } ?? "")
      }
      rows.append([
        c["label"] as? String ?? "?", String(format: "%.4f", c["e_np"] as? Double ?? 0), v("e_up"),
        v("gamma"), v("p"),
        pct(c["mean_abs_relative_deviation"]), (c["held_out"] as? Bool == true) ? "yes" : "",
      ])
    }
    o += "<h3>One law per configuration</h3>\n"
    o += Report.table(
      ["configuration", "e_np", "e_up", "gamma", "p", "mean |dev|", "held out"], rows.map(Report.plain))
    return o + "</section>\n"
  }
}
