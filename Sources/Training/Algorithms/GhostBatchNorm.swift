import Engine
import Foundation
import NN

/// Ghost batch norm (Hoffer et al. 2017; Composer `ghost_batchnorm`): in training, every
/// batch norm normalises chunks of about `ghost_batch_size` examples with their own
/// statistics (``NN/BatchNorm/ghostBatchSize``: `torch.chunk` into `ceil(N / size)` chunks,
/// running statistics updated per chunk at `momentum / chunks`). Evaluation is unchanged.
/// A model without batch norm is refused; a batch no larger than the ghost size gets a warning.
public final class GhostBatchNorm: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "ghost_batchnorm"
  public static let summary = "batch norm statistics over chunks of ghost_batch_size examples"
  public static let parameters = [
    AlgorithmParameter("ghost_batch_size", "32", "examples per chunk, at least 2")
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    GhostBatchNorm(
      size: Int(try p.double("ghost_batch_size", "a whole number >= 2") { $0 >= 2 && $0 == $0.rounded() }))
  }

  public let name = GhostBatchNorm.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .runStart]
  public let size: Int
  public init(size: Int) { self.size = size }

  /// The function form: sets the ghost size of every batch norm; returns how many.
  @discardableResult
  public static func apply(to network: Network<Float>, size: Int?) -> Int {
    let bns = network.body.namedModules().compactMap { $0.1 as? BatchNorm<Float> }
    for b in bns { b.ghostBatchSize = size }
    return bns.count
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    guard Self.apply(to: network, size: size) > 0 else {
      throw EngineError("--algorithms ghost_batchnorm needs batch norm layers; \(network.name) has none")
    }
    return network
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    if event == .runStart && state.loader.batchSize <= size {
      warnChangesNothing(name, "the batch of \(state.loader.batchSize) is no larger than ghost_batch_size=\(size)")
    }
  }
}
