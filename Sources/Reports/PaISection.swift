import Experiments
import Foundation

/// Pruning at initialisation (`pai_<hash>` runs): test accuracy against density, one colour
/// per method with its ablations (shuffle, reinit, invert, ...) as dashed lines of the same
/// colour; magnitude pruning after training and the IMP tickets of any lottery run on the
/// page are drawn in grey and black as references. Below it, every run side by side.
public enum PaISection: ReportSection {
  public static let kind = "pai"

  public static func html(_ results: [RunResult], all: [RunResult]) -> String {
    let e = escapeMarkup
    let runs = results.compactMap(\.rowsResult)
    let lotteries = all.compactMap(\.rowsResult).filter { $0.kind == "lottery" }
    var series: [Series] = []
    var colour = 0
    for run in runs {
      let method = run.method
      let isReference = method == "magnitude-after-training"
      let color = isReference ? Palette.reference : Palette.color(colour)
      if !isReference { colour += 1 }
      let suffix =
        runs.filter({ $0.method == method }).count > 1 ? " [\(Report.folder(run.runDir))]" : ""
      let rows = run.rows
      func points(_ pick: (ResultRow) -> ResultRow?) -> [Point] {
        rows.compactMap { r in
          guard let o = pick(r), let x = o.density, let y = o.testAccuracyMean else { return nil }
          let (partial, note) = Report.partialNote(o, run)
          let target = r.targetDensity.map { "target \(TickFormat.percent.text($0)) " } ?? ""
          return Point(x: x, y: y, spread: o.testAccuracyStd, note: target + note, partial: partial)
        }
      }
      series.append(Series(method + suffix, color: color, points: points { $0 }))
      for b in LotterySection.branchNames(rows) {
        let pts = points { $0.branches?[b] }
        series.append(
          Series("\(method) + \(b)\(suffix)", color: color, dashed: true, band: false, points: pts))
      }
    }
    for lottery in lotteries {
      var s = LotterySection.lines(lottery) { r in r.testAccuracyMean.map { ($0, r.testAccuracyStd) } }[0]
      s.name = "IMP tickets [\(Report.folder(lottery.runDir))]"
      s.color = "#000000"
      s.band = false
      series.append(s)
    }
    var o = "<section class=\"pai\" id=\"pai\">\n<h2>Pruning at initialization</h2>\n"
    let models = Set(runs.map { Report.training($0.record, "model") }).sorted()
    o +=
      "<p class=\"meta\">\(runs.count) run\(runs.count == 1 ? "" : "s") (\(e(models.joined(separator: ", ")))). Dashed lines of a method's colour are its ablations; grey is magnitude pruning after training, black the IMP tickets of lottery runs on this page.</p>\n"
    for run in runs { o += Report.unfinishedBanner(run.unfinished) }
    o += Chart(
      title: "Test accuracy against density, per method", x: .density(),
      y: Axis("test accuracy", format: .percent),
      series: series, width: 760, height: 380
    ).svg()
    o += "\n<h3>Side by side (test accuracy %, mean ± std over replicates)</h3>\n"
    o += "<pre>\(e(Results.sideBySide(runs + lotteries)))</pre>\n"
    return o + "</section>\n"
  }
}
