import Experiments
import Foundation

/// Pruning at initialisation (`pai_<hash>` runs): test accuracy against density, one colour
/// per method with its ablations (shuffle, reinit, invert, ...) as dashed lines of the same
/// colour; magnitude pruning after training and the IMP tickets of any lottery run on the
/// page are drawn in grey and black as references. Below it, every run side by side.
public enum PaISection: ReportSection {
  public static let kind = "pai"

  public static func html(_ runs: [[String: Any]], all: [[String: Any]]) -> String {
    let e = escapeMarkup
    var series: [Series] = []
    var colour = 0
    for run in runs {
      let method = run["method"] as? String ?? "?"
      let isReference = method == "magnitude-after-training"
      let color = isReference ? Palette.reference : Palette.color(colour)
      if !isReference { colour += 1 }
      let suffix =
        runs.filter({ $0["method"] as? String == method }).count > 1 ? " [\(Report.folder(run))]" : ""
      let rows = Report.rows(run)
      func points(_ pick: ([String: Any]) -> [String: Any]?) -> [Point] {
        rows.compactMap { r in
          guard let o = pick(r), let x = Report.double(o, "density"),
            let y = Report.double(o, "test_accuracy_mean")
          else { return nil }
          let (partial, note) = Report.partialNote(o, run)
          let target =
            Report.double(r, "target_density").map { "target \(TickFormat.percent.text($0)) " } ?? ""
          return Point(
            x: x, y: y, spread: Report.double(o, "test_accuracy_std"), note: target + note, partial: partial)
        }
      }
      series.append(Series(method + suffix, color: color, points: points { $0 }))
      for b in LotterySection.branchNames(rows) {
        let pts = points { ($0["branches"] as? [String: Any])?[b] as? [String: Any] }
        series.append(
          Series("\(method) + \(b)\(suffix)", color: color, dashed: true, band: false, points: pts))
      }
    }
    for lottery in all where lottery["kind"] as? String == "lottery" {
      var s = LotterySection.lines(lottery) { r in
        Report.double(r, "test_accuracy_mean").map { ($0, Report.double(r, "test_accuracy_std")) }
      }[0]
      s.name = "IMP tickets [\(Report.folder(lottery))]"
      s.color = "#000000"
      s.band = false
      series.append(s)
    }
    var o = "<section class=\"pai\" id=\"pai\">\n<h2>Pruning at initialization</h2>\n"
    let models = Set(runs.compactMap { Report.training($0)["model"] as? String }).sorted()
    o +=
      "<p class=\"meta\">\(runs.count) run\(runs.count == 1 ? "" : "s") (\(e(models.joined(separator: ", ")))). Dashed lines of a method's colour are its ablations; grey is magnitude pruning after training, black the IMP tickets of lottery runs on this page.</p>\n"
    for run in runs { o += Report.unfinishedBanner(run) }
    o += Chart(
      title: "Test accuracy against density, per method", x: .density(),
      y: Axis("test accuracy", format: .percent),
      series: series, width: 760, height: 380
    ).svg()
    o += "\n<h3>Side by side (test accuracy %, mean ± std over replicates)</h3>\n"
    o += "<pre>\(e(Results.sideBySide(runs + all.filter { $0["kind"] as? String == "lottery" })))</pre>\n"
    return o + "</section>\n"
  }
}
