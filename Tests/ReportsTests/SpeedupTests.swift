import Analysis
import Experiments
import Foundation
import TestSupport
import Testing
import Training

/// `lth speedup` on synthetic data: the numbers recomputed from the runs' own metrics.
@Suite("lth speedup", .serialized, .tags(.endToEnd), .endToEnd)
struct SpeedupTests {
  @Test(
    "lth bench --algorithms: every method's step against the baseline's (those that fit the model), and no tensor allocated per step"
  )
  func overhead() throws {
    // LeNet takes the methods that act on any model; a small ResNet the surgery and
    // resizing ones (at batch 32: the bench measures, this test checks), each held in
    // its active phase for the whole bench: a steady state allocates nothing (the first
    // step at a new image or batch size plans its kernels once).
    let surgery = [
      "blurpool:min_channels=4", "stochastic_depth", "ghost_batchnorm:ghost_batch_size=16",
      "progressive_resizing:delay_fraction=1;finetune_fraction=0", "colout", "layer_freezing:freeze_start=0",
      "weight_standardization", "squeeze_excite:min_channels=4", "selective_backprop:start=0;end=1;interrupt=0",
    ]
    for (model, batch) in [("mnist_lenet_64_32", "60"), ("cifar_resnet_8_4", "32")] {
      let specs =
        model.hasPrefix("mnist")
        ? Algorithms.names.map { $0 == "selective_backprop" ? surgery.last! : $0 } : surgery
      let names = specs.map { String($0.split(separator: ":")[0]) }
      let r = try CLI.run([
        "bench", "--model", model, "--algorithms", specs.joined(separator: ","), "--steps", "4", "--threads", "1",
        "--batch-size", batch, "--json",
      ])
      try #require(r.status == 0, "\(r.stderr)")
      let o =
        try JSONSerialization.jsonObject(with: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
        as! [String: Any]
      let rows = o["rows"] as! [[String: Any]]
      let leftOut = o["left_out"] as! [String: String]
      let expectedOut: Set =
        model.hasPrefix("mnist")
        ? [
          "blurpool", "stochastic_depth", "ghost_batchnorm", "progressive_resizing", "colout", "weight_standardization",
          "squeeze_excite",
        ] : []
      #expect(Set(leftOut.keys) == expectedOut, "\(model): \(leftOut)")
      #expect(rows.map { $0["name"] as! String } == ["baseline"] + names.filter { !expectedOut.contains($0) })
      #expect(rows[0]["ratio"] as! Double == 1)
      for row in rows {
        #expect(row["tensor_allocations_per_step"] as! Double == 0, "\(row["name"]!) allocates in steady state")
        #expect((row["step_ms"] as! Double) > 0)
      }
    }
  }

  @Test(
    "time to the baseline's validation accuracy, speed-ups and the Pareto frontier match the runs' metrics")
  func study() throws {
    let out = CLI.tempDir()
    let args = [
      "speedup", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--methods", "label_smoothing,ema,blurpool,recipe_mild",
      "--replicates", "2", "--output", out, "--json", "--quiet", "--threads", "1",
    ]
    let r = try CLI.run(args)
    try #require(r.status == 0, "\(r.stderr)")
    let result = try JSONDecoder().decode(
      SpeedupResult.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
    // BlurPool does not fit LeNet (no strided layers): left out, with why; the mild recipe
    // keeps what fits (EMA and label smoothing).
    #expect(result.rows.map(\.name) == ["baseline", "label_smoothing", "ema", "recipe_mild"])
    #expect(result.leftOut["blurpool"]?.contains("needs strided convolutions") == true)
    let mild = try String(
      contentsOfFile: RunFile.hparams.path(in: result.runDirs["recipe_mild"]![0]), encoding: .utf8)
    #expect(
      mild.contains("label_smoothing:smoothing=0.08") && mild.contains("ema:half_life=25ba")
        && !mild.contains("blurpool") && !mild.contains("progressive_resizing"), "\(mild)")
    // The study's folder: speedup.json, and a report with the Pareto chart (a series per row
    // and the frontier) that lth report redraws from it.
    let root = try #require(result.runDir)
    let page = try String(contentsOfFile: RunFile.report.path(in: root), encoding: .utf8)
    for name in result.rows.map(\.name) + ["Pareto frontier"] {
      #expect(page.contains("data-series=\"\(name)\""), "\(name)")
    }
    let redraw = try CLI.run(["report", root, "--output", CLI.tempDir() + "/r.html"])
    #expect(redraw.status == 0, "\(redraw.stderr)")
    let doc = try #require(try ResultSchemaTests.documented()["speedup"])
    let line = Data((r.stdout.split(separator: "\n").last ?? "").utf8)
    let keys = Set((try JSONSerialization.jsonObject(with: line) as! [String: Any]).keys)
    #expect(
      doc.required.isSubset(of: keys) && keys.isSubset(of: doc.required.union(doc.optional)),
      "\(keys.sorted())")
    // The target is the baseline's mean final validation accuracy, read from metrics.jsonl.
    func curve(_ dir: String) throws -> [MetricRecord] {
      try MetricsLog.parse(AtomicFile.read(RunFile.metrics.path(in: dir)), path: "m").filter {
        $0.split == "validation"
      }
    }
    let baseRuns = try result.runDirs["baseline"]!.map(curve)
    // The test set is evaluated only at the start and the end (test_eval_every 0it).
    let all = try MetricsLog.parse(AtomicFile.read(RunFile.metrics.path(in: result.runDirs["baseline"]![0])), path: "m")
    let testSteps = all.filter { $0.split == "test" }.map(\.step)
    #expect(testSteps.count == 2 && testSteps[0] == 0 && testSteps[1] == baseRuns[0].last!.step, "\(testSteps)")
    #expect(baseRuns[0].count > 2)
    let target = baseRuns.map { $0.last!.accuracy }.reduce(0, +) / 2
    #expect(abs(result.targetAccuracy - target) < 1e-12)
    // The baseline's time to its own mean: over the replicates that get there (at least one).
    let baseTimes = baseRuns.compactMap { c in c.first { $0.accuracy >= target }?.seconds }
    try #require(!baseTimes.isEmpty)
    let baseTime = baseTimes.reduce(0, +) / Double(baseTimes.count)
    for row in result.rows {
      let runs = try result.runDirs[row.name]!.map(curve)
      #expect(runs.count == 2 && row.replicates == 2)
      let times = runs.compactMap { c in c.first { $0.accuracy >= target }?.seconds }
      #expect(row.reached == times.count)
      if times.isEmpty {
        #expect(row.timeToAccuracySpeedup == nil)
      } else {
        let s = times.map { baseTime / $0 }.reduce(0, +) / Double(times.count)
        #expect(abs(row.timeToAccuracySpeedup! - s) < 1e-9, "\(row.name)")
      }
      // Validation accuracy only: every number is a validation evaluation's.
      #expect(abs(row.finalAccuracyMean - runs.map { $0.last!.accuracy }.reduce(0, +) / 2) < 1e-12)
    }
    // The frontier: a row is on it exactly when no other is at least as good on both axes
    // and better on one.
    for a in result.rows {
      let dominated = result.rows.contains { b in
        b.name != a.name && b.finalAccuracyMean >= a.finalAccuracyMean && b.wallClockMean <= a.wallClockMean
          && (b.finalAccuracyMean > a.finalAccuracyMean || b.wallClockMean < a.wallClockMean)
      }
      #expect(a.pareto == !dominated, "\(a.name)")
    }
    // The runs carry their method in their hyperparameters; a rerun trains nothing.
    let again = try CLI.run(args)
    #expect(again.status == 0)
    let second = try JSONDecoder().decode(
      SpeedupResult.self, from: Data((again.stdout.split(separator: "\n").last ?? "").utf8))
    #expect(second.rows == result.rows)
    let bad = try CLI.run(["speedup", "--methods", "label_smoothing,warp_drive", "--output", out])
    #expect(bad.status != 0 && bad.stderr.contains("unknown method 'warp_drive'"))
  }
}
