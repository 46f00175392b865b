import Engine
import Foundation
import NN

/// Gradient clipping (Composer `gradient_clipping`), applied after the backward pass to the
/// gradients the optimizer will apply (pruned entries excluded):
/// - `norm`: all gradients scaled by `min(1, threshold / ||g||)`, `||g||` over every parameter;
/// - `value`: every entry clamped to `[-threshold, threshold]`;
/// - `adaptive` (Brock et al. 2021): per unit (a weight's output row; a vector as one unit),
///   `g *= min(1, threshold * max(||w||, 1e-3) / ||g||)`.
/// Composer has no default threshold; LotteryKit's is 1.0.
public final class GradientClipping: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "gradient_clipping"
  public static let summary = "clip gradients by global norm, by value, or adaptively per unit"
  public static let parameters = [
    AlgorithmParameter("clipping_type", "norm", "norm, value or adaptive"),
    AlgorithmParameter("clipping_threshold", "1.0", "positive"),
  ]
  public enum Kind: String, Sendable { case norm, value, adaptive }
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    GradientClipping(
      Kind(rawValue: try p.choice("clipping_type", ["norm", "value", "adaptive"]))!,
      threshold: Float(try p.double("clipping_threshold", "positive") { $0 > 0 && $0.isFinite }))
  }

  public let name = GradientClipping.algorithmName
  public let events: Set<TrainingEvent> = [.runStart, .afterBackward]
  public let kind: Kind
  public let threshold: Float
  public init(_ kind: Kind, threshold: Float) { (self.kind, self.threshold) = (kind, threshold) }

  /// Per-entry factors for one parameter's gradient `g` (weights `w`, mask `m` or nil):
  /// the function form of every mode but `norm`, which needs every parameter (``clip(_:kind:threshold:)``).
  static func unitFactors(g: Tensor<Float>, w: Tensor<Float>, m: Tensor<Float>?, threshold: Float) -> [Float]
  {
    let units = g.shape.count >= 2 ? g.shape[0] : 1
    let per = g.count / units
    var out = [Float](repeating: 1, count: units)
    for u in 0..<units {
      var gg = 0.0
      var ww = 0.0
      for j in u * per..<(u + 1) * per where m.map({ $0.data[j] != 0 }) ?? true {
        gg += Double(g.data[j]) * Double(g.data[j])
        ww += Double(w.data[j]) * Double(w.data[j])
      }
      let limit = Double(threshold) * max(ww.squareRoot(), 1e-3)
      let gn = gg.squareRoot()
      if gn > limit { out[u] = Float(limit / gn) }
    }
    return out
  }

  /// `sum g^2` over the entries the mask keeps (all without a mask), in Double.
  public static func squaredNorm(_ g: Tensor<Float>, mask: Tensor<Float>?) -> Double {
    let (gp, n) = (g.data, g.count)
    var total = 0.0
    if let mp = mask?.data {
      for j in 0..<n where mp[j] != 0 { total += Double(gp[j]) * Double(gp[j]) }
    } else {
      for j in 0..<n { total += Double(gp[j]) * Double(gp[j]) }
    }
    return total
  }

  /// The function form: clips the gradients `(g, w, mask)` in place; returns the global
  /// gradient norm before clipping (over unpruned entries).
  @discardableResult
  public static func clip(
    _ tensors: [(g: Tensor<Float>, w: Tensor<Float>, mask: Tensor<Float>?)], kind: Kind, threshold: Float
  )
    -> Double
  {
    var total = 0.0
    for (g, _, m) in tensors { total += squaredNorm(g, mask: m) }
    let norm = total.squareRoot()
    switch kind {
    case .norm:
      guard norm > Double(threshold) else { break }
      let f = Float(Double(threshold) / norm)
      for (g, _, _) in tensors {
        let gp = g.data
        for j in 0..<g.count { gp[j] *= f }
      }
    case .value:
      for (g, _, _) in tensors {
        let gp = g.data
        for j in 0..<g.count { gp[j] = min(max(gp[j], -threshold), threshold) }
      }
    case .adaptive:
      for (g, w, m) in tensors {
        let f = unitFactors(g: g, w: w, m: m, threshold: threshold)
        let per = g.count / f.count
        for j in 0..<g.count { g.data[j] *= f[j / per] }
      }
    }
    return norm
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    if event == .runStart {
      state.denseGradients = true  // every gradient lands in `grad`, where this reads it
      return
    }
    let params = state.network.parameters.map(\.1)
    // Adaptive factors come from the gradients before clipping (weights read only then).
    let factors =
      kind == .adaptive
      ? params.map { Self.unitFactors(g: $0.grad, w: $0.value, m: $0.mask, threshold: threshold) } : []
    let norm = Self.clip(
      params.map { ($0.grad, $0.grad, $0.mask) }, kind: kind == .adaptive ? .value : kind,
      threshold: kind == .adaptive ? .infinity : threshold)
    // A gradient the optimizer reads in compact form (surviving entries, row-major) gets
    // the same treatment entry by entry.
    for (k, p) in params.enumerated() {
      if kind == .adaptive {
        let per = p.grad.count / factors[k].count
        for j in 0..<p.grad.count { p.grad.data[j] *= factors[k][j / per] }
      }
      guard let c = p.compactGradient, let u = p.updatePositions, c.count == u.positions.count else {
        continue
      }
      switch kind {
      case .norm:
        if norm > Double(threshold) { for i in 0..<c.count { c.data[i] *= Float(Double(threshold) / norm) } }
      case .value:
        for i in 0..<c.count { c.data[i] = min(max(c.data[i], -threshold), threshold) }
      case .adaptive:
        let per = p.grad.count / factors[k].count
        for (i, pos) in u.positions.enumerated() { c.data[i] *= factors[k][pos / per] }
      }
    }
  }
}
