import Engine
import NN

/// GraSP (Wang, Zhang & Grosse 2020). The paper's score is `S = -w * (H g)`, with
/// `g = dL/dw` of the loss on logits divided by a temperature of 200, and `H g` the
/// Hessian-gradient product; GraSP removes the weights with the HIGHEST `S`. LotteryKit keeps
/// the highest scores, so this method returns `-S = w * (H g)`: the weights kept are those
/// with the lowest `S`, as in the paper (a test pins this sign).
///
/// `H g` is a central difference of gradients in Float64 along `g` (pruned weights held at
/// zero): `H g = (grad(w + eps g) - grad(w - eps g)) / (2 eps)`, with `eps * |g|` equal to
/// `1e-5 * max(1, |w|)`; the error is second order in `eps`.
public struct GraSPScore: ScoreMethod {
  public init() {}
  public static let temperature = 200.0
  public var name: String { "grasp" }
  public var formula: String {
    "S = -w * (H g), g = dL/dw at temperature 200; removes the highest S (kept score: -S)"
  }
  public var needsData: Bool { true }
  public var defaultRounds: Int { 1 }

  /// `H g` on the prunable weights, in ``Network/prunableParameters`` order, and `g`.
  public static func hessianGradient(_ net: Network<Double>, mask: Mask, batch: ScoreBatch) throws
    -> (hg: [[Double]], g: [[Double]])
  {
    net.setTraining(true)
    let prunable = Set(net.prunableParameters.map(\.0))
    func gradients() throws -> [[Double]] {
      try net.lossAndGradients(input: batch.x, labels: batch.labels, temperature: temperature)
      return net.prunableParameters.map { n, p in
        let m = mask.values[n]!
        return (0..<p.grad.count).map { m[$0] == 0 ? 0 : p.grad[$0] }
      }
    }
    let g = try gradients()
    let gNorm = g.reduce(0) { $0 + $1.reduce(0) { $0 + $1 * $1 } }.squareRoot()
    guard gNorm > 0, gNorm.isFinite else {
      throw PruningError("grasp: the gradient on the score batch is \(gNorm) (cannot form H g)")
    }
    let wNorm = net.prunableParameters.reduce(0.0) { acc, e in
      acc + (0..<e.1.value.count).reduce(0.0) { $0 + e.1.value[$1] * e.1.value[$1] }
    }.squareRoot()
    let eps = 1e-5 * max(1, wNorm) / gNorm
    var k = 0
    var direction: [Tensor<Double>?] = []
    for (n, p) in net.parameters {
      if prunable.contains(n) {
        direction.append(Tensor(g[k], shape: p.value.shape))
        k += 1
      } else {
        direction.append(nil)
      }
    }
    let plus = try net.withPerturbedParameters(direction: direction, scale: eps) { try gradients() }
    let minus = try net.withPerturbedParameters(direction: direction, scale: -eps) { try gradients() }
    let hg = zip(plus, minus).map { a, b in zip(a, b).map { ($0 - $1) / (2 * eps) } }
    return (hg, g)
  }

  public func scores(_ c: ScoringContext) throws -> Scores {
    let b = try c.requireBatch(name)
    let (hg, _) = try Self.hessianGradient(c.network, mask: c.mask, batch: b)
    var out: Scores = [:]
    for (t, (n, p)) in c.network.prunableParameters.enumerated() {
      out[n] = (0..<p.value.count).map { p.value[$0] * hg[t][$0] }
    }
    return out
  }
}
