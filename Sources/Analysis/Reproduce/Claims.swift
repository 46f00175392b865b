import Engine
import Experiments
import Foundation
import Training

/// What the papers' claims are computed from: per-replicate accuracies of a result row, and
/// the lowest density down to which every level satisfies a condition.
enum Claims {
  /// Test accuracy per replicate: at the early-stopping step when every replicate has one
  /// (a validation split exists), else at the end of training.
  static func accuracy(_ row: ResultRow) -> Sample {
    let stop = row.perReplicate.compactMap(\.earlyStopTestAccuracy)
    return Sample(
      stop.count == row.perReplicate.count && !stop.isEmpty ? stop : row.perReplicate.map(\.testAccuracy))
  }

  /// Final test accuracy per replicate.
  static func finalAccuracy(_ row: ResultRow) -> Sample { Sample(row.perReplicate.map(\.testAccuracy)) }

  /// Early-stopping iteration per replicate (empty without a validation split).
  static func earlyStop(_ row: ResultRow) -> Sample {
    Sample(row.perReplicate.compactMap(\.earlyStopStep).map(Double.init))
  }

  /// Walking the pruned rows from the densest, the last row before the first that fails
  /// `ok` (nil when the densest pruned row fails already): "down to which density".
  static func lowest(_ pruned: [ResultRow], _ ok: (ResultRow) -> Bool) -> ResultRow? {
    var last: ResultRow? = nil
    for r in pruned.sorted(by: { ($0.density ?? 0) > ($1.density ?? 0) }) {
      guard ok(r) else { break }
      last = r
    }
    return last
  }

  /// The dense row (level 0) and the pruned rows of a lottery result.
  static func split(_ results: RunResults) throws -> (dense: ResultRow, pruned: [ResultRow]) {
    guard let dense = results.rows.first(where: { $0.level == 0 }) else {
      throw RunError("\(results.runDir): level 0 is missing")
    }
    return (dense, results.rows.filter { ($0.level ?? 0) > 0 })
  }

  /// The fewest replicates of the samples a verdict compares.
  static func replicates(_ samples: Sample...) -> Int { samples.map(\.n).min() ?? 0 }

  /// `holds`/`differs`, or `too few replicates` below 2.
  static func verdict(_ ok: Bool, replicates n: Int) -> Finding.Verdict {
    n < 2 ? .tooFewReplicates : ok ? .holds : .differs
  }

  static func pct(_ x: Double) -> String { String(format: "%.2f", x * 100) }
  static func pts(_ x: Double) -> String { String(format: "%+.2f", x * 100) }

  /// Iterations per epoch for a batch size when `validation` examples are held out.
  static func perEpoch(_ s: ReproductionSettings, batch: Int, validation: Int = 0) -> Int {
    max(1, (s.trainSize - validation + batch - 1) / batch)
  }
}
