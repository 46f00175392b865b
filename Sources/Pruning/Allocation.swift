import Engine
import NN

/// How scores become a mask at a target density `d` over the pooled (pruned) tensors:
/// - `global`: one threshold over every pooled weight (the PaI paper's choice, the default);
/// - `layerwise`: every pooled tensor keeps `d` of its weights;
/// - `erk`: Erdős–Rényi-Kernel (Evci et al. 2020): tensor `t` keeps density
///   `min(1, eps * (n_in + n_out + k_h + k_w) / (n_in * n_out * k_h * k_w))`, `eps` chosen so
///   the kept counts sum to `d` of the pool; tensors capped at 1 are dense and the excess is
///   redistributed over the others (largest remainders make the sum exact).
///
/// Tensors outside the pool (never pruned) stay as they are. A minimum density per tensor
/// raises a tensor's count to `ceil(min * size)` (the total may then exceed the target).
public enum Allocation: String, Codable, Sendable, CaseIterable {
  case global, layerwise, erk
}

/// The one selector every method shares (IMP levels, PaI, ablations): scores -> mask.
public enum Selector {
  /// Weights kept at density `d` over `size` weights: `round(d * size)`.
  public static func keepCount(_ d: Double, of size: Int) -> Int { Int((d * Double(size)).rounded()) }

  /// Counts per pooled tensor for keeping `keep` of the pooled weights alive in `mask`
  /// under one threshold: the weights pruned are the lowest scores, ties broken by position
  /// (tensor order, then index), exactly as one sort of `(score, tensor, index)` would.
  static func globalPlan(_ scores: Scores, mask: Mask, pooled: [String], keep: Int)
    -> (threshold: Double, ties: Int)?
  {
    var all: [Double] = []
    for n in pooled {
      let v = mask.values[n]!
      let s = scores[n]!
      for i in 0..<v.count where v[i] == 1 { all.append(s[i]) }
    }
    let prune = all.count - keep
    guard prune > 0 else { return nil }
    // Everything below `threshold` goes; of the scores equal to it, the first `ties` by position.
    let threshold = kthSmallest(&all, prune - 1)
    let below = all.reduce(0) { $0 + ($1 < threshold ? 1 : 0) }
    return (threshold, prune - below)
  }

  /// The `k`-th smallest value (0-based) of `a`, in expected linear time (quickselect with
  /// a median-of-three pivot; reorders `a`). Sorting instead made 100 SynFlow rounds on
  /// VGG-11 (9.2M weights) spend most of their time in the sort.
  public static func kthSmallest(_ a: inout [Double], _ k: Int) -> Double {
    var (lo, hi) = (0, a.count - 1)
    while lo < hi {
      let mid = lo + (hi - lo) / 2
      let (x, y, z) = (a[lo], a[mid], a[hi])
      let pivot = max(min(x, y), min(max(x, y), z))
      var (i, j) = (lo, hi)
      while i <= j {
        while a[i] < pivot { i += 1 }
        while a[j] > pivot { j -= 1 }
        if i <= j {
          a.swapAt(i, j)
          i += 1
          j -= 1
        }
      }
      if k <= j {
        hi = j
      } else if k >= i {
        lo = i
      } else {
        return a[k]
      }
    }
    return a[k]
  }

  /// Keeps the `counts[n]` highest-scoring weights alive in `mask` of each tensor in
  /// `counts` (ties: the earlier index is pruned first); other tensors are unchanged.
  public static func keepTop(_ scores: Scores, mask: Mask, counts: [String: Int]) -> Mask {
    var out = mask
    for (n, keep) in counts {
      let v = mask.values[n]!
      let s = scores[n]!
      var alive: [(Double, Int)] = []
      for i in 0..<v.count where v[i] == 1 { alive.append((s[i], i)) }
      let prune = alive.count - keep
      guard prune > 0 else { continue }
      alive.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
      for (_, i) in alive.prefix(prune) { out.values[n]![i] = 0 }
    }
    return out
  }

  /// Keeps `keep` of the weights alive in the `pooled` tensors under one threshold.
  public static func keepTopGlobal(_ scores: Scores, mask: Mask, pooled: [String], keep: Int) throws -> Mask {
    try checkFinite(scores, pooled)
    return globalKeep(scores, mask: mask, pooled: pooled, keep: keep)
  }

  /// ``keepTopGlobal(_:mask:pooled:keep:)`` on scores already checked for NaN.
  static func globalKeep(_ scores: Scores, mask: Mask, pooled: [String], keep: Int) -> Mask {
    var out = mask
    guard let (threshold, tiesToPrune) = globalPlan(scores, mask: mask, pooled: pooled, keep: keep) else {
      return out
    }
    var ties = tiesToPrune
    for n in pooled {
      let s = scores[n]!
      for i in 0..<s.count where mask.values[n]![i] == 1 {
        if s[i] < threshold {
          out.values[n]![i] = 0
        } else if s[i] == threshold && ties > 0 {
          out.values[n]![i] = 0
          ties -= 1
        }
      }
    }
    return out
  }

  static func checkFinite(_ scores: Scores, _ names: [String]) throws {
    for n in names where scores[n]!.contains(where: { $0.isNaN }) {
      throw PruningError("scores of \(n) contain NaN")
    }
  }

  /// ERK counts per pooled tensor summing exactly to `keep` (see ``Allocation``).
  public static func erkCounts(shapes: [String: [Int]], pooled: [String], keep: Int) -> [String: Int] {
    let size = Dictionary(uniqueKeysWithValues: pooled.map { ($0, shapes[$0]!.reduce(1, *)) })
    let raw = Dictionary(
      uniqueKeysWithValues: pooled.map { n in
        (n, Double(shapes[n]!.reduce(0, +)) / Double(size[n]!))
      })
    var dense = Set<String>()
    var eps = 0.0
    while true {
      let fixed = dense.reduce(0) { $0 + size[$1]! }
      let rest = pooled.filter { !dense.contains($0) }
      let weight = rest.reduce(0.0) { $0 + raw[$1]! * Double(size[$1]!) }
      eps = weight > 0 ? Double(keep - fixed) / weight : 0
      let newlyDense = rest.filter { eps * raw[$0]! >= 1 }
      if newlyDense.isEmpty { break }
      dense.formUnion(newlyDense)
    }
    var counts: [String: Int] = [:]
    var remainders: [(Double, Int, String)] = []
    for (t, n) in pooled.enumerated() {
      if dense.contains(n) {
        counts[n] = size[n]!
      } else {
        let x = eps * raw[n]! * Double(size[n]!)
        counts[n] = Int(x.rounded(.down))
        remainders.append((x - x.rounded(.down), t, n))
      }
    }
    var missing = keep - counts.values.reduce(0, +)
    remainders.sort { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }
    for (_, _, n) in remainders where missing > 0 && counts[n]! < size[n]! {
      counts[n]! += 1
      missing -= 1
    }
    return counts
  }

  /// The mask at density `d` of the pooled tensors under `allocation`, keeping the highest
  /// `scores` among the weights alive in `mask`. `minDensity` raises each pooled tensor's
  /// count to `ceil(minDensity * size)` (its highest scores).
  public static func select(
    _ scores: Scores, mask: Mask, pooled: [String], density d: Double, allocation: Allocation,
    minDensity: Double? = nil
  ) throws -> Mask {
    try checkFinite(scores, pooled)
    let total = pooled.reduce(0) { $0 + mask.total($1) }
    let keep = keepCount(d, of: total)
    var counts: [String: Int]
    switch allocation {
    case .global:
      let m = globalKeep(scores, mask: mask, pooled: pooled, keep: keep)
      counts = Dictionary(uniqueKeysWithValues: pooled.map { ($0, m.remaining($0)) })
      if minDensity == nil { return m }
    case .layerwise:
      counts = Dictionary(uniqueKeysWithValues: pooled.map { ($0, keepCount(d, of: mask.total($0))) })
    case .erk:
      counts = erkCounts(shapes: mask.shapes, pooled: pooled, keep: keep)
    }
    if let minDensity {
      for n in pooled {
        counts[n] = max(counts[n]!, Int((minDensity * Double(mask.total(n))).rounded(.up)))
      }
    }
    for n in pooled { counts[n] = min(counts[n]!, mask.remaining(n)) }
    return keepTop(scores, mask: mask, counts: counts)
  }
}
