import Analysis
import ArgumentParser
import Engine
import Experiments
import Families
import Datasets
import Foundation
import Reports
import Storage
import Training

struct Speedup: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Time-to-accuracy of each speed-up method against a baseline, on the validation split.",
    discussion: """
      Trains the baseline and every method alone (--methods: a subset), --replicates seeds \
      each, one after another on all --threads (so wall clocks compare), as lth train runs \
      in --output (re-running reuses finished ones). Reports per method the final validation \
      accuracy, the wall clock, the accuracy at the baseline's wall clock, the time to the \
      baseline's final validation accuracy and the speed-up (real only when every replicate \
      gets there and mean ± 2 std/sqrt(n) excludes 1), and marks the Pareto frontier \
      (accuracy against wall clock). --scale quick: 250 iterations of SGD (x0.1 at 125 and \
      187), evaluated every 50. Recipes are rows too (recipe_mild, recipe_medium, \
      recipe_hot); methods and recipes that do not fit the model are left out, with why. \
      Resumed runs restart their clocks: let a study finish.
      """)
  @Option(help: "Model (see lth models).") var model = "cifar_resnet_20_8"
  @Option(help: "Data set (default fashion_mnist).") var dataset = "fashion_mnist"
  @Option(help: "Folder with the data set's files.") var dataDir: String?
  @Option(help: "quick (250 iterations) or full (the family's recipe).") var scale = ReproductionScale.quick
  @Option(help: "Methods to compare, comma separated (default: every registered one).") var methods: String?
  @Option(help: "Seeds per method, at least 2.") var replicates = 2
  @Option(help: "Output root.") var output = "./lth_runs"
  @Option(help: "Worker threads.") var threads = MachineInfo.defaultThreads
  @Flag(help: "Print one JSON object.") var json = false
  @Flag(help: "No progress output.") var quiet = false

  func run() throws {
    runOrFail {
      guard replicates >= 2 else {
        throw EngineError("--replicates must be at least 2 (a spread needs two), got \(replicates)")
      }
      guard threads >= 1 else { throw EngineError("--threads must be at least 1, got \(threads)") }
      StopSignal.install()
      Parallel.threads = threads
      var rows: [SpeedupStudy.Row] = []
      var leftOut: [String: String] = [:]
      let info = try DatasetCatalog.info(dataset)
      for row in try SpeedupStudy.rows(only: methods?.split(separator: ",").map(String.init), scale: scale) {
        let fresh = try ModelZoo.make(model, inputShape: info.shape, classes: info.classes)
        if let why = try SpeedupStudy.leftOut(row, network: fresh) { leftOut[row.name] = why } else { rows.append(row) }
      }
      // Every row resolved before any training: a bad method fails at once.
      let plans = try rows.map { row in
        try (0..<replicates).map { r in
          try TrainingHParams.resolve(
            model: model,
            SpeedupStudy.overrides(
              scale: scale, dataset: dataset, seed: UInt64(r), algorithms: row.algorithms, recipe: row.recipe))
        }
      }
      var runs: [(SpeedupStudy.Row, [String])] = []
      for (row, hs) in zip(rows, plans) {
        var dirs: [String] = []
        for (r, h) in hs.enumerated() {
          let (s, done) = try TrainRunner.run(h, dataDir: dataDir, output: output, progress: .quiet)
          if !quiet {
            say(
              String(
                format: "%@ seed %d: %@ %.1f s", row.name, r, done ? "finished before," : "trained,",
                s.seconds))
          }
          dirs.append(s.runDir)
        }
        runs.append((row, dirs))
      }
      let (target, analysed) = try SpeedupStudy.analyse(runs)
      let result = SpeedupResult(
        model: model, dataset: dataset, scale: scale, rows: analysed,
        runDirs: Dictionary(uniqueKeysWithValues: runs.map { ($0.0.name, $0.1) }), targetAccuracy: target,
        leftOut: leftOut, provenance: try? JSONValue(encoding: Provenance.current()))
      // The study's folder beside its runs: speedup.json and its report.
      let identity = ([model, dataset, scale.rawValue, "\(replicates)"] + rows.map { "\($0)" }).joined(separator: "\n")
      let root = RunLayout.root(.speedup, output: output, hash: RunHash.short(identity))
      try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
      var stored = result
      stored.runDir = root
      try AtomicFile.write(jsonLine(stored) + "\n", to: RunFile.speedup.path(in: root))
      try AtomicFile.write(
        Report.html(title: "LotteryKit speed-up study: \(model)", runs: [.speedup(stored)]),
        to: RunFile.report.path(in: root))
      print(json ? jsonLine(stored) : stored.table() + "\nreport: \(RunFile.report.path(in: root))")
    }
  }
}
