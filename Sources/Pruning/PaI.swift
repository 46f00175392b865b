import Engine
import Foundation
import NN

/// Pruning at initialisation, one mask: score, select, repeat.
///
/// Round `r` of `R` restores the weights being scored, applies the current mask, scores
/// with the method (negated for the inverted-scores ablation) and keeps the highest at
/// density `d^(r / R)` under the allocation (``Selector/select(_:mask:pooled:density:allocation:minDensity:)``).
/// `R = 1` is one-shot pruning; SynFlow's default is 100 rounds, and any method may iterate
/// (iterative SNIP is a known variant).
public enum PaIPruner {
  public static func prune(
    network net: Network<Double>, start: Mask, method: any ScoreMethod, density: Double,
    allocation: Allocation, rounds: Int, pooled: [String], minDensity: Double? = nil,
    batch: ScoreBatch?, seed: UInt64, invert: Bool = false
  ) throws -> Mask {
    guard density > 0, density <= 1 else { throw PruningError("density must be in (0, 1], got \(density)") }
    guard rounds >= 1 else { throw SettingError("rounds", "must be at least 1, got \(rounds)") }
    let savedParameters = net.parameters.map { $0.1.value.clone() }
    let savedBuffers = net.buffers.map { $0.1.clone() }
    func restore() {
      for (k, (_, p)) in net.parameters.enumerated() { p.value.copy(from: savedParameters[k]) }
      for (k, (_, b)) in net.buffers.enumerated() { b.copy(from: savedBuffers[k]) }
    }
    defer { restore() }
    var mask = start
    for r in 1...rounds {
      restore()
      for (n, p) in net.prunableParameters {
        let m = mask.values[n]!
        for i in 0..<m.count where m[i] == 0 { p.value[i] = 0 }
      }
      var s = try method.scores(
        ScoringContext(network: net, mask: mask, batch: batch, seed: seed, round: r))
      if invert { for (n, v) in s { s[n] = v.map { -$0 } } }
      let dr = pow(density, Double(r) / Double(rounds))
      mask = try Selector.select(
        s, mask: mask, pooled: pooled, density: r == rounds ? density : dr, allocation: allocation,
        minDensity: minDensity)
    }
    return mask
  }
}
