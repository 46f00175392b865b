import Engine
import Foundation
import NN

/// Sharpness-aware minimisation (Foret et al. 2021; Composer `sam`): every `interval` steps
/// the gradient is taken at the worst nearby point instead, `g' = dL/dw (w + e)` with
/// `e = rho g / (||g|| + epsilon)`, `g` the step's gradient over unpruned entries, and the
/// optimizer applies `g'` at `w` (the weights are put back exactly). On the other steps it
/// does nothing. A second forward and backward pass on SAM steps (``TrainingState/forwardBackward()``).
public final class SAM: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "sam"
  public static let summary = "gradient at w + rho g / ||g|| every interval steps"
  public static let parameters = [
    AlgorithmParameter("rho", "0.05", "neighbourhood radius, positive"),
    AlgorithmParameter("epsilon", "1e-12", "added to ||g||, non-negative"),
    AlgorithmParameter("interval", "1", "steps between SAM steps, at least 1"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    SAM(
      rho: Float(try p.double("rho", "positive") { $0 > 0 && $0.isFinite }),
      epsilon: Float(try p.double("epsilon", "non-negative") { $0 >= 0 && $0.isFinite }),
      interval: try p.steps("interval"))
  }

  public let name = SAM.algorithmName
  public let events: Set<TrainingEvent> = [.runStart, .afterBackward]
  public let rho: Float
  public let epsilon: Float
  public let interval: Int
  private var perturbation: [Tensor<Float>] = []
  private var saved: [Tensor<Float>] = []
  public init(rho: Float, epsilon: Float = 1e-12, interval: Int = 1) {
    (self.rho, self.epsilon, self.interval) = (rho, epsilon, interval)
  }

  /// The function form: writes `e = rho g / (||g|| + epsilon)` (zero at pruned entries) into
  /// `into` and returns `||g||` over unpruned entries.
  @discardableResult
  public static func perturbation(
    _ grads: [(g: Tensor<Float>, mask: Tensor<Float>?)], rho: Float, epsilon: Float, into out: [Tensor<Float>]
  ) -> Double {
    var total = 0.0
    for (g, m) in grads { total += GradientClipping.squaredNorm(g, mask: m) }
    let norm = total.squareRoot()
    let scale = Float(Double(rho) / (norm + Double(epsilon)))
    for (k, (g, m)) in grads.enumerated() {
      out[k].resize(g.shape)
      let (e, gp, n) = (out[k].data, g.data, g.count)
      if let mp = m?.data {
        for j in 0..<n { e[j] = mp[j] != 0 ? scale * gp[j] : 0 }
      } else {
        for j in 0..<n { e[j] = scale * gp[j] }
      }
    }
    return norm
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    if event == .runStart {
      state.denseGradients = true  // the step's gradient must be whole in `grad`
      return
    }
    guard state.step % interval == 0 else { return }
    let params = state.network.parameters.map(\.1)
    if perturbation.count != params.count {
      perturbation = params.map { _ in Tensor<Float>(zeros: [0]) }
      saved = params.map { _ in Tensor<Float>(zeros: [0]) }
    }
    Self.perturbation(params.map { ($0.grad, $0.mask) }, rho: rho, epsilon: epsilon, into: perturbation)
    // Kept: the weights, to put back bit for bit (w + e - e need not be w in floating point).
    for (k, p) in params.enumerated() {
      let w = p.value
      saved[k].copy(from: w)
      let (wp, ep) = (w.data, perturbation[k].data)
      for j in 0..<w.count { wp[j] += ep[j] }
    }
    let loss = state.loss
    try state.forwardBackward()
    state.loss = loss  // the step's loss, as logged, is the one at w
    for (k, p) in params.enumerated() { p.value.copy(from: saved[k]) }
  }
}
