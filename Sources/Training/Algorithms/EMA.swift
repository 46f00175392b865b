import Engine
import Foundation
import NN

/// Exponential moving average of the weights (Composer `ema`): after every
/// `update_interval` steps, `avg = s avg + (1 - s) w` for every parameter and batch-norm
/// buffer, with `s = 0.5^(update_interval / half_life)`. Evaluation runs on the average
/// (swapped in on `evaluationStart`, the training weights back on `evaluationEnd`); both
/// are kept, and the average is in every checkpoint. Pruned weights stay 0 in the average,
/// since they are 0 in every weight it averages.
public final class EMA: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "ema"
  public static let summary = "evaluate on avg = s avg + (1 - s) w, s = 0.5^(update_interval / half_life)"
  public static let parameters = [
    AlgorithmParameter("half_life", "1000ba", "steps after which a weight's share has halved"),
    AlgorithmParameter("update_interval", "1ba", "steps between updates"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    EMA(halfLife: try p.steps("half_life"), updateInterval: try p.steps("update_interval"))
  }

  public let name = EMA.algorithmName
  public let events: Set<TrainingEvent> = [
    .initialize, .runStart, .batchEnd, .evaluationStart, .evaluationEnd,
  ]
  public let halfLife: Int
  public let updateInterval: Int
  /// The weight of the old average at each update.
  public var smoothing: Float { Float(Foundation.pow(0.5, Double(updateInterval) / Double(halfLife))) }
  private var average: [(String, Tensor<Float>)] = []
  private var backup: [Tensor<Float>] = []
  private var live: [Tensor<Float>] {
    network.map { n in n.parameters.map { $0.1.value } + n.buffers.map(\.1) } ?? []
  }
  private weak var network: Network<Float>?

  public init(halfLife: Int, updateInterval: Int = 1) {
    (self.halfLife, self.updateInterval) = (halfLife, updateInterval)
  }

  public func initialize(_ net: Network<Float>) throws -> Network<Float> {
    network = net
    average =
      net.parameters.map { ("p." + $0.0, Tensor<Float>(zeros: $0.1.value.shape)) }
      + net.buffers.map { ("b." + $0.0, Tensor<Float>(zeros: $0.1.shape)) }
    backup = average.map { Tensor<Float>(zeros: $0.1.shape) }
    return net
  }

  public var stateTensors: [(String, Tensor<Float>)] { average }

  /// The function form: `avg = s avg + (1 - s) w`, elementwise.
  public static func update(_ avg: Tensor<Float>, with w: Tensor<Float>, smoothing s: Float) {
    let (a, x, t) = (avg.data, w.data, 1 - s)
    for i in 0..<avg.count { a[i] = s * a[i] + t * x[i] }
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    if network !== state.network { _ = try initialize(state.network) }
    let w = live
    switch event {
    case .runStart:
      if !state.resumed { for (k, t) in w.enumerated() { average[k].1.copy(from: t) } }
    case .batchEnd:
      guard state.step % updateInterval == 0 else { return }
      for (k, t) in w.enumerated() { Self.update(average[k].1, with: t, smoothing: smoothing) }
    case .evaluationStart:
      for (k, t) in w.enumerated() {
        backup[k].copy(from: t)
        t.copy(from: average[k].1)
      }
    default:  // evaluationEnd
      for (k, t) in w.enumerated() { t.copy(from: backup[k]) }
    }
  }
}
