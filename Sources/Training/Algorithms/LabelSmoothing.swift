import Engine
import Foundation
import NN

/// Label smoothing (Szegedy et al. 2016; Composer `label_smoothing`): the cross-entropy
/// targets become `(1 - smoothing) * onehot(y) + smoothing / K` for K classes. Acts on
/// `afterLoss`: the loss and its gradient are recomputed from the logits
/// (``SoftCrossEntropy``). Evaluation is unchanged.
public final class LabelSmoothing: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "label_smoothing"
  public static let summary = "targets (1 - smoothing) onehot(y) + smoothing / K"
  public static let parameters = [
    AlgorithmParameter("smoothing", "0.1", "mass spread evenly over the K classes, in [0, 1)")
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    LabelSmoothing(smoothing: Float(try p.double("smoothing", "in [0, 1)") { $0 >= 0 && $0 < 1 }))
  }

  public let name = LabelSmoothing.algorithmName
  public let events: Set<TrainingEvent> = [.afterLoss]
  public let smoothing: Float
  private let targets = Tensor<Float>(zeros: [0])
  public init(smoothing: Float) { self.smoothing = smoothing }

  /// The function form: the smoothed loss and its gradient (into `dLogits`).
  public static func loss(logits: Tensor<Float>, labels: [Int32], smoothing: Float, dLogits: Tensor<Float>)
    -> Double
  {
    let q = Tensor<Float>(zeros: [0])
    SoftCrossEntropy.targets(labels: labels, classes: logits.shape[1], smoothing: smoothing, into: q)
    return SoftCrossEntropy.loss(logits: logits, targets: q, dLogits: dLogits)
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    SoftCrossEntropy.targets(
      labels: state.labels, classes: state.logits.shape[1], smoothing: smoothing, into: targets)
    state.loss = SoftCrossEntropy.loss(logits: state.logits, targets: targets, dLogits: state.dLogits)
  }
}
