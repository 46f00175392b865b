import ArgumentParser
import Engine
import Experiments
import Foundation
import Reports
import Training

struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report",
    abstract: "One self-contained HTML page with SVG plots for lottery, prune-init, lmc and scaling runs.",
    discussion: """
      The page has inline CSS and SVG, no JavaScript and nothing to fetch: it opens offline \
      and prints. Sections per kind: lottery (accuracy and early stopping against density, \
      per-layer density, learning curves), pruning at initialization (methods, ablations, IMP \
      and magnitude after training as references), mode connectivity (error along the path, \
      instability against k), and provenance for every run. It draws the objects `lth results \
      --json` prints (embedded in the page as JSON). Safe to regenerate while a run is going: \
      unfinished phases are marked.
      """)
  @Argument(help: "Run folders (lottery_<hash>, pai_<hash>, lmc_<hash>).") var runDirs: [String]
  @Option(help: "The HTML file (default: RUN_DIR/\(RunFile.report.rawValue) for one run, ./\(RunFile.report.rawValue) for several).")
  var output: String?
  @Option(help: "The page title (default: from the first run).") var title: String?

  func run() throws {
    runOrFail {
      guard !runDirs.isEmpty else { throw EngineError("give at least one run folder") }
      let runs = try runDirs.map { try Report.collect($0) }
      let path = output ?? (runDirs.count == 1 ? RunFile.report.path(in: runDirs[0]) : RunFile.report.rawValue)
      guard path.hasSuffix(".html") || path.hasSuffix(".htm") else {
        throw EngineError("--output must name an .html file, got \(path)")
      }
      let first = runs[0]
      let model = first.record.hparams?["training"]?["model"]?.string
      let page = Report.html(title: title ?? "LotteryKit report: \(model ?? first.kind)", runs: runs)
      try AtomicFile.write(Array(page.utf8), to: path)
      print("report: \(URL(fileURLWithPath: path).standardizedFileURL.path)")
    }
  }
}
