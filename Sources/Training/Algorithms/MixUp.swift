import Engine
import Foundation
import NN

/// MixUp (Zhang et al. 2018; Composer `mixup`): each batch is mixed with a permutation of
/// itself, `x' = lambda x + (1 - lambda) x[perm]`, and trained against the same mixture of
/// one-hot targets, `lambda onehot(y) + (1 - lambda) onehot(y[perm])`, with one
/// `lambda ~ Beta(alpha, alpha)` per batch. `lambda` and `perm` come from the callback's
/// random stream of the step, so a resumed run mixes what an uninterrupted one would.
public final class MixUp: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "mixup"
  public static let summary =
    "x' = lambda x + (1 - lambda) x[perm], targets mixed alike, lambda ~ Beta(alpha, alpha)"
  public static let parameters = [
    AlgorithmParameter("alpha", "0.2", "Beta(alpha, alpha) concentration, positive")
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    MixUp(alpha: try p.double("alpha", "positive") { $0 > 0 && $0.isFinite })
  }

  public let name = MixUp.algorithmName
  public let events: Set<TrainingEvent> = [.batchLoaded, .afterLoss]
  public let alpha: Double
  private let mixture = LabelMixture()
  private var lambda: Float = 1
  public init(alpha: Double) { self.alpha = alpha }

  /// `lambda ~ Beta(alpha, alpha)` and a permutation of `n` from `r`.
  public static func draw(alpha: Double, n: Int, _ r: inout RandomStream) -> (lambda: Float, perm: [Int]) {
    let a = gamma(alpha, &r)
    let b = gamma(alpha, &r)
    return (Float(a / (a + b)), r.permutation(n))
  }

  /// Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 through Gamma(shape + 1) U^(1/shape)).
  static func gamma(_ shape: Double, _ r: inout RandomStream) -> Double {
    if shape < 1 { return gamma(shape + 1, &r) * Foundation.pow(max(r.uniform(), 1e-300), 1 / shape) }
    let d = shape - 1.0 / 3
    let c = 1 / (9 * d).squareRoot()
    while true {
      var x: Double
      var v: Double
      repeat {
        x = r.normal()
        v = 1 + c * x
      } while v <= 0
      v = v * v * v
      let u = r.uniform()
      if u < 1 - 0.0331 * x * x * x * x
        || Foundation.log(max(u, 1e-300)) < 0.5 * x * x + d * (1 - v + Foundation.log(v))
      {
        return d * v
      }
    }
  }

  /// The function form: mixes the `n` examples of `x` in place, `x[i] = lambda x[i] + (1 -
  /// lambda) source[perm[i]]`, where `source` holds the unmixed batch (batch-major
  /// `[N, ...]` or feature-major `[F, L]`).
  public static func mix(_ x: Tensor<Float>, source: Tensor<Float>, n: Int, lambda: Float, perm: [Int]) {
    if x.layout.featureMajorBatch != nil {
      let (f, ld) = (x.shape[0], x.shape[1])
      for r in 0..<f {
        let row = x.data + r * ld
        let src = source.data + r * ld
        for i in 0..<n { row[i] = lambda * src[i] + (1 - lambda) * src[perm[i]] }
      }
    } else {
      let per = x.count / n
      for i in 0..<n {
        let d = x.data + i * per
        let a = source.data + i * per
        let b = source.data + perm[i] * per
        for j in 0..<per { d[j] = lambda * a[j] + (1 - lambda) * b[j] }
      }
    }
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    let n = state.labels.count
    if event == .batchLoaded {
      var r = state.random(for: self)
      let (l, perm) = Self.draw(alpha: alpha, n: n, &r)
      lambda = l
      mixture.begin(state, perm: perm)
      Self.mix(mixture.mixed, source: mixture.original, n: n, lambda: lambda, perm: perm)
    } else {
      mixture.loss(state, weight: lambda)
    }
  }
}
