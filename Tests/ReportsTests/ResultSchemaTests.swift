import Analysis
import Experiments
import Foundation
import Training
import Reports
import TestSupport
import Testing

/// Every command's `--json` against docs/results-schema.md: the top-level keys are the
/// documented ones, and the JSON decodes into its type and encodes back to the same JSON
/// (so the type holds every key and value the command prints).
@Suite("Results schema: every command's JSON", .serialized, .tags(.endToEnd), .endToEnd)
struct ResultSchemaTests {
  /// The `keys NAME` blocks of docs/results-schema.md: required keys and `?` optional ones.
  static func documented() throws -> [String: (required: Set<String>, optional: Set<String>)] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let text = try String(contentsOf: root.appendingPathComponent("docs/results-schema.md"), encoding: .utf8)
    var out: [String: (Set<String>, Set<String>)] = [:]
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for (i, line) in lines.enumerated() where line.hasPrefix("```keys ") {
      let name = String(line.dropFirst("```keys ".count))
      let words = lines[i + 1].split(separator: " ").map(String.init)
      out[name] = (
        Set(words.filter { !$0.hasSuffix("?") }), Set(words.filter { $0.hasSuffix("?") }.map { String($0.dropLast()) })
      )
    }
    return out
  }

  func last(_ r: CLI.Result) -> String { String(r.stdout.split(separator: "\n").last ?? "") }

  func object(_ line: String) throws -> NSDictionary {
    try JSONSerialization.jsonObject(with: Data(line.utf8)) as! NSDictionary
  }

  /// The keys match the documented block `name`.
  func keys(_ name: String, _ line: String, _ schema: [String: (required: Set<String>, optional: Set<String>)])
    throws
  {
    let doc = try #require(schema[name], "docs/results-schema.md has no `keys \(name)` block")
    let keys = Set(try object(line).allKeys.map { $0 as! String })
    #expect(doc.required.isSubset(of: keys), "\(name): missing \(doc.required.subtracting(keys).sorted())")
    #expect(
      keys.isSubset(of: doc.required.union(doc.optional)),
      "\(name): undocumented \(keys.subtracting(doc.required.union(doc.optional)).sorted())")
  }

  /// Decoding into `T` and encoding again gives the same JSON object.
  func roundTrip<T: Codable>(_: T.Type, _ line: String) throws {
    let value = try JSONDecoder().decode(T.self, from: Data(line.utf8))
    #expect(try object(jsonLine(value)) == object(line), "\(T.self) does not round-trip")
  }

  func run(_ args: [String]) throws -> String {
    let r = try CLI.run(args)
    #expect(r.status == 0, "lth \(args.joined(separator: " ")): \(r.stderr)")
    return last(r)
  }

  @Test("lottery, branch, prune-init, lmc, interpolate, results, scaling, train, plan and bench")
  func everyCommand() throws {
    let schema = try Self.documented()
    let out = CLI.tempDir()
    let small = [
      "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1", "--training-steps",
      "2ep", "--quiet", "--output", out, "--threads", "2",
    ]
    // Lottery and a branch (kind lottery).
    let lottery = try run(["lottery"] + small + ["--levels", "1", "--json", "--validation-size", "60"])
    try keys("lottery", lottery, schema)
    try roundTrip(RunResults.self, lottery)
    try roundTrip(RunResult.self, lottery)
    let branch = try run(
      ["branch", "random-reinit"] + small + ["--levels", "1", "--json", "--validation-size", "60"])
    try keys("lottery", branch, schema)
    let results = try JSONDecoder().decode(RunResults.self, from: Data(branch.utf8))
    #expect(results.rows.count == 2 && results.rows[1].branches?["random-reinit"] != nil)
    #expect(results.rows[0].perReplicate[0].earlyStopStep != nil && results.schemaVersion == ResultSchema.version)
    // Test accuracy is reported at the early-stopping step chosen on validation data (the
    // test evaluation logged at that step), and no maximum over test evaluations is.
    #expect(!lottery.contains("best_test_accuracy") && !branch.contains("best_test_accuracy"))
    for row in results.rows {
      let rep = row.perReplicate[0]
      let metrics = try AtomicFile.read(
        RunFile.metrics.path(in: RunLayout.main(RunLayout.level(results.runDir, replicate: 1, level: row.level!))))
      let test = try MetricsLog.parse(metrics, path: "metrics").filter { $0.split == "test" }
      let stop = try #require(rep.earlyStopStep)
      #expect(rep.earlyStopTestAccuracy == test.last { $0.step == stop }?.accuracy)
      #expect(row.earlyStopTestAccuracyMean == rep.earlyStopTestAccuracy)
    }
    // Pruning at initialisation.
    let pai = try run(
      ["prune-init"] + small + ["--method", "magnitude", "--densities", "0.2", "--json"])
    try keys("pai", pai, schema)
    try roundTrip(RunResults.self, pai)
    // Several runs.
    let lotteryRoot = try #require(results.runDir as String?)
    let paiRoot = try JSONDecoder().decode(RunResults.self, from: Data(pai.utf8)).runDir
    let both = try run(["results", lotteryRoot, paiRoot, "--json"])
    try keys("runs", both, schema)
    try roundTrip(RunResultList.self, both)
    // Mode connectivity and interpolation.
    let lmc = try run(
      ["lmc"] + small + ["--spawn-steps", "0", "--points", "3", "--train-eval-size", "100", "--json"])
    try keys("lmc", lmc, schema)
    try roundTrip(LMCRunResults.self, lmc)
    let spawn = try JSONDecoder().decode(LMCRunResults.self, from: Data(lmc.utf8)).runDir + "/replicate_1/spawn_0"
    let curve = try run([
      "interpolate", RunFile.modelFinal.path(in: spawn + "/child_1"), RunFile.modelFinal.path(in: spawn + "/child_2"),
      "--model",
      "mnist_lenet_64_32", "--dataset", "synthetic", "--points", "3", "--train-eval-size", "100", "--json",
    ])
    try keys("interpolate", curve, schema)
    try roundTrip(CurveRecord.self, curve)
    // A scaling sweep, its fit and a prediction.
    _ = try run([
      "scaling", "sweep", "--family", "mnist_lenet_64_32", "--width-factors", "0.5,1", "--data-fractions", "0.1",
      "--levels", "3", "--dataset", "synthetic", "--training-steps", "2ep", "--pruning-fraction", "0.5", "--quiet",
      "--output", out, "--threads", "2",
    ])
    let sweep = out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first { $0.hasPrefix("scaling_") }!
    let fit = try run(["scaling", "fit", sweep, "--joint", "--bootstrap", "3", "--json"])
    try keys("scaling", fit, schema)
    try roundTrip(ScalingFitResult.self, fit)
    let predict = try run([
      "scaling", "predict", "--fit", RunFile.fit.path(in: sweep), "--width-factor", "0.5", "--data-fraction", "0.1",
      "--density", "0.3", "--json",
    ])
    try keys("predict", predict, schema)
    try roundTrip(ScalingPrediction.self, predict)
    // Training, planning and timing.
    let train = try run(["train"] + small + ["--json"])
    try keys("train", train, schema)
    try roundTrip(TrainSummary.self, train)
    let plan = try run(["plan", "--json", "lottery"] + small + ["--levels", "2"])
    try keys("plan", plan, schema)
    let bench = try run([
      "bench", "--model", "mnist_lenet_64_32", "--batch-size", "16", "--steps", "2", "--warmup", "1", "--threads", "2",
      "--json",
    ])
    try keys("bench", bench, schema)
  }
}
