import Engine
import Experiments
import Foundation
import NN
import Training

/// `lth speedup`: a baseline and each speed-up method alone, trained with replicates, then
/// time-to-accuracy, accuracy at equal epochs and at equal wall clock, and the Pareto
/// frontier. Every accuracy is on the validation split, never the test set.
///
/// - Target: the baseline's final validation accuracy (mean over its replicates).
/// - Time to accuracy of a run: the wall-clock seconds (training and its evaluations, from
///   `metrics.jsonl`) of its first validation evaluation at or above the target; none when
///   it never gets there.
/// - Speed-up of a row: the baseline's mean time to the target over each replicate's time,
///   mean and sample standard deviation over the replicates that reach it; the interval is
///   mean ± 2 std / sqrt(n), and a speed-up is called real only when every replicate reaches
///   the target and the interval excludes 1.
/// - Pareto frontier: rows that no other row beats on both final validation accuracy
///   (higher) and wall clock (lower).
public enum SpeedupStudy {
  /// One row: a name and the `--algorithms` text (nil: the baseline).
  /// One row: a name and the `--algorithms` text, or a recipe (neither: the baseline).
  public struct Row: Sendable, Equatable {
    public var name: String
    public var algorithms: String?
    public var recipe: String?
    public init(_ name: String, _ algorithms: String?, recipe: String? = nil) {
      (self.name, self.algorithms, self.recipe) = (name, algorithms, recipe)
    }
    public var isBaseline: Bool { algorithms == nil && recipe == nil }
  }

  /// Where Composer's default does not fit a short run, the value `quick` uses instead:
  /// EMA's half-life of 1,000 batches would leave most of the initial weights in the
  /// average after `quick`'s 250 iterations (measured at 500: chance accuracy), so it gets
  /// a tenth of the run; the recipes' EMA (half-life 100, every 20 steps) too.
  public static let quickParameters = ["ema": "half_life=25ba"]
  /// Iterations of `quick`: the baseline, 17 methods and 3 recipes, 2 seeds each, fit in
  /// 20 minutes on 2 cores for `cifar_resnet_20_8`.
  public static let quickIterations = 250

  /// The baseline, then every registered method alone with Composer's defaults (or `only`),
  /// adapted by ``quickParameters`` at `quick`.
  /// Recipes (``Training/AlgorithmRecipes``) are rows too, named `recipe_mild` and so on.
  public static func rows(only: [String]? = nil, scale: ReproductionScale = .full) throws -> [Row] {
    let recipes = AlgorithmRecipes.names.map { "recipe_" + $0 }
    let names = only ?? (Algorithms.names + recipes)
    for n in names where Algorithms.kind(n) == nil && !recipes.contains(n) {
      throw EngineError(
        "--methods: unknown method '\(n)'; known: \((Algorithms.names + recipes).joined(separator: ", "))")
    }
    return [Row("baseline", nil)]
      + names.map { n in
        recipes.contains(n)
          ? Row(
            n, scale == .quick ? "ema:" + quickParameters["ema"]! : nil,
            recipe: String(n.dropFirst("recipe_".count)))
          : Row(n, scale == .quick ? quickParameters[n].map { n + ":" + $0 } ?? n : n)
      }
  }

  /// Why a row does not apply to `network` (a freshly built model), or nil: a method whose
  /// surgery or input requirement refuses the model or changes nothing in it, a recipe
  /// none of whose methods fit.
  public static func leftOut(_ row: Row, network: Network<Float>) throws -> String? {
    if let recipe = row.recipe {
      return try AlgorithmRecipes.expand(recipe, for: network).kept.isEmpty ? "no method of it fits" : nil
    }
    for spec in try Algorithms.parse(row.algorithms ?? "") {
      if let why = try AlgorithmRecipes.fits(spec, network: network) { return why }
    }
    return nil
  }

  /// The training of `quick` (a narrow ResNet-20's 500 iterations) or `full` (the family's
  /// recipe), with a validation split and frequent evaluation.
  public static func overrides(
    scale: ReproductionScale, dataset: String?, seed: UInt64, algorithms: String?, recipe: String? = nil
  )
    -> TrainingOverrides
  {
    var o = TrainingOverrides()
    o.dataset = dataset
    o.seed = seed
    o.validationSize = 5000
    o.algorithms = algorithms
    o.recipe = recipe
    // The test set only at the start and the end: nothing here reads it, and evaluating
    // it every time would add the same wall clock to every row.
    o.testEvalEvery = "0it"
    if scale == .quick {
      let t = quickIterations
      o.trainingSteps = "\(t)it"
      o.evalEvery = "\(t / 5)it"
      o.milestones = ["\(t / 2)it", "\(t * 3 / 4)it"]
    } else {
      o.evalEvery = "1ep"
    }
    return o
  }

  /// Validation evaluations (seconds, accuracy) of a finished run.
  public static func curve(_ dir: String) throws -> [(seconds: Double, accuracy: Double)] {
    let path = RunFile.metrics.path(in: dir)
    return try MetricsLog.parse(AtomicFile.read(path), path: path).filter { $0.split == "validation" }.map {
      ($0.seconds, $0.accuracy)
    }
  }

  /// The study's target (the baseline's mean final validation accuracy) and its rows, from
  /// each row's run folders (one per replicate, in order).
  public static func analyse(_ runs: [(Row, [String])]) throws -> (target: Double, rows: [SpeedupRow]) {
    let curves = try runs.map { (row, dirs) in (row, try dirs.map(curve)) }
    guard let base = curves.first(where: { $0.0.isBaseline })?.1, !base.isEmpty else {
      throw EngineError("lth speedup: the baseline has no finished run")
    }
    let target = Sample(base.map { $0.last?.accuracy ?? 0 }).mean
    func reach(_ c: [(seconds: Double, accuracy: Double)]) -> Double? {
      c.first { $0.accuracy >= target }?.seconds
    }
    let baseTime = Sample(base.compactMap(reach)).mean
    let baseWall = Sample(base.map { $0.last?.seconds ?? 0 }).mean
    var rows: [SpeedupRow] = curves.map { (row, cs) in
      let finals = Sample(cs.map { $0.last?.accuracy ?? 0 })
      let walls = Sample(cs.map { $0.last?.seconds ?? 0 })
      let atBase = Sample(cs.map { c in c.last { $0.seconds <= baseWall }?.accuracy ?? 0 })
      let times = cs.compactMap(reach)
      let speedups = Sample(times.map { baseTime / $0 })
      let half = speedups.std.map { 2 * $0 / Double(speedups.n).squareRoot() }
      let low = half.map { speedups.mean - $0 }
      let high = half.map { speedups.mean + $0 }
      return SpeedupRow(
        name: row.name, algorithms: row.algorithms, replicates: cs.count, reached: times.count,
        finalAccuracyMean: finals.mean, finalAccuracyStd: finals.std, wallClockMean: walls.mean,
        wallClockStd: walls.std, accuracyAtBaselineTimeMean: atBase.mean,
        timeToAccuracyMean: times.isEmpty ? nil : Sample(times).mean,
        timeToAccuracySpeedup: times.isEmpty ? nil : speedups.mean, timeToAccuracySpeedupStd: speedups.std,
        timeToAccuracySpeedupLow: low, timeToAccuracySpeedupHigh: high,
        real: times.count == cs.count && low.map { $0 > 1 || high! < 1 } ?? false, pareto: false)
    }
    for i in rows.indices {
      rows[i].pareto = !rows.indices.contains { j in
        j != i && rows[j].finalAccuracyMean >= rows[i].finalAccuracyMean
          && rows[j].wallClockMean <= rows[i].wallClockMean
          && (rows[j].finalAccuracyMean > rows[i].finalAccuracyMean
            || rows[j].wallClockMean < rows[i].wallClockMean)
      }
    }
    return (target, rows)
  }
}

/// One row of `lth speedup --json` (`rows`): accuracies are validation fractions, times
/// wall-clock seconds.
public struct SpeedupRow: Codable, Equatable, Sendable {
  public var name: String
  @Nullable public var algorithms: String?
  public var replicates: Int
  /// Replicates that reach the baseline's final validation accuracy.
  public var reached: Int
  public var finalAccuracyMean: Double
  @Nullable public var finalAccuracyStd: Double?
  public var wallClockMean: Double
  @Nullable public var wallClockStd: Double?
  /// Validation accuracy at the last evaluation within the baseline's mean wall clock.
  public var accuracyAtBaselineTimeMean: Double
  @Nullable public var timeToAccuracyMean: Double?
  /// Baseline time to the target over this row's (null when no replicate reaches it).
  @Nullable public var timeToAccuracySpeedup: Double?
  @Nullable public var timeToAccuracySpeedupStd: Double?
  @Nullable public var timeToAccuracySpeedupLow: Double?
  @Nullable public var timeToAccuracySpeedupHigh: Double?
  /// Every replicate reaches the target and the interval excludes 1.
  public var real: Bool
  public var pareto: Bool

  enum CodingKeys: String, CodingKey {
    case name, algorithms, replicates, reached, real, pareto
    case finalAccuracyMean = "final_accuracy_mean"
    case finalAccuracyStd = "final_accuracy_std"
    case wallClockMean = "wall_clock_mean"
    case wallClockStd = "wall_clock_std"
    case accuracyAtBaselineTimeMean = "accuracy_at_baseline_time_mean"
    case timeToAccuracyMean = "time_to_accuracy_mean"
    case timeToAccuracySpeedup = "time_to_accuracy_speedup"
    case timeToAccuracySpeedupStd = "time_to_accuracy_speedup_std"
    case timeToAccuracySpeedupLow = "time_to_accuracy_speedup_low"
    case timeToAccuracySpeedupHigh = "time_to_accuracy_speedup_high"
  }
}

/// `lth speedup --json`.
public struct SpeedupResult: Codable, Equatable, Sendable {
  public var kind = "speedup"
  public var model: String
  public var dataset: String
  public var scale: ReproductionScale
  /// The baseline's final validation accuracy (mean): what time-to-accuracy aims at.
  public var targetAccuracy: Double
  public var rows: [SpeedupRow]
  public var runDirs: [String: [String]]
  /// Methods and recipes not run, with why (they do not fit the model).
  public var leftOut: [String: String] = [:]
  /// The study's folder (`speedup_<hash>`), when read from one.
  public var runDir: String?
  public var provenance: JSONValue?
  public var schemaVersion = ResultSchema.version

  public init(
    model: String, dataset: String, scale: ReproductionScale, rows: [SpeedupRow], runDirs: [String: [String]],
    targetAccuracy: Double, leftOut: [String: String] = [:], provenance: JSONValue?
  ) {
    (self.model, self.dataset, self.scale, self.rows, self.runDirs) = (model, dataset, scale, rows, runDirs)
    (self.targetAccuracy, self.leftOut, self.provenance) = (targetAccuracy, leftOut, provenance)
  }

  enum CodingKeys: String, CodingKey {
    case kind, model, dataset, scale, rows, provenance
    case leftOut = "left_out"
    case runDir = "run_dir"
    case targetAccuracy = "target_accuracy"
    case runDirs = "run_dirs"
    case schemaVersion = "schema_version"
  }

  /// A fixed-width table: one row per method.
  public func table() -> String {
    func f(_ v: Double?, _ digits: Int = 2) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "-" }
    var lines = [
      [
        "method", "val acc %", "wall s", "acc at base time %", "time to target s", "speed-up", "interval",
        "real", "pareto",
      ]
    ]
    for r in rows {
      lines.append([
        r.name, f(r.finalAccuracyMean * 100) + (r.finalAccuracyStd.map { " ± " + f($0 * 100) } ?? ""),
        f(r.wallClockMean, 1), f(r.accuracyAtBaselineTimeMean * 100), f(r.timeToAccuracyMean, 1),
        f(r.timeToAccuracySpeedup) + (r.reached < r.replicates ? " (\(r.reached)/\(r.replicates))" : ""),
        r.timeToAccuracySpeedupLow.map { "[\(f($0)), \(f(r.timeToAccuracySpeedupHigh))]" } ?? "-",
        r.real ? "yes" : "no",
        r.pareto ? "*" : "",
      ])
    }
    let widths = lines[0].indices.map { i in lines.map { $0[i].count }.max()! }
    return lines.map { l in
      l.indices.map { l[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(
        separator: "  ")
    }
    .joined(separator: "\n")
      + String(format: "\ntarget: the baseline's final validation accuracy, %.2f%%", targetAccuracy * 100)
      + leftOut.keys.sorted().map { "\nleft out: \($0): \(leftOut[$0]!)" }.joined()
  }
}
