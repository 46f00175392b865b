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
    "lth bench --algorithms: every method's step against the baseline's, and no tensor allocated per step")
  func overhead() throws {
    let r = try CLI.run([
      "bench", "--model", "mnist_lenet_64_32", "--algorithms", Algorithms.names.joined(separator: ","),
      "--steps", "4",
      "--threads", "1", "--json",
    ])
    try #require(r.status == 0, "\(r.stderr)")
    let o =
      try JSONSerialization.jsonObject(with: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
      as! [String: Any]
    let rows = o["rows"] as! [[String: Any]]
    #expect(rows.map { $0["name"] as! String } == ["baseline"] + Algorithms.names)
    #expect(rows[0]["ratio"] as! Double == 1)
    for row in rows {
      #expect(row["tensor_allocations_per_step"] as! Double == 0, "\(row["name"]!) allocates in steady state")
      #expect((row["step_ms"] as! Double) > 0)
    }
  }

  @Test(
    "time to the baseline's validation accuracy, speed-ups and the Pareto frontier match the runs' metrics")
  func study() throws {
    let out = CLI.tempDir()
    let args = [
      "speedup", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--methods", "label_smoothing,ema",
      "--replicates", "2", "--output", out, "--json", "--quiet", "--threads", "1",
    ]
    let r = try CLI.run(args)
    try #require(r.status == 0, "\(r.stderr)")
    let result = try JSONDecoder().decode(
      SpeedupResult.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
    #expect(result.rows.map(\.name) == ["baseline", "label_smoothing", "ema"])
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
