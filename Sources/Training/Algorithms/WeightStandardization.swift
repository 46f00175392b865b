import Engine
import NN

/// Weight standardization (Qiao et al. 2019; Composer `weight_standardization`), surgery:
/// every convolution but the last `n_last_layers_ignore` (in module order) uses its
/// weights standardized per output filter, `(W - mean) / sqrt(var + 1e-10)` (biased
/// variance, no gain; ``NN/Conv2d/standardizesWeights``). A pruned weight is standardized
/// over its surviving entries and its pruned ones stay 0. The stored parameter is the raw
/// weight (as Composer's parametrization stores `original`). A model without
/// convolutions is refused; one whose convolutions are all ignored gets a warning.
public final class WeightStandardization: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "weight_standardization"
  public static let summary = "convolutions use (W - mean) / std per output filter"
  public static let parameters = [
    AlgorithmParameter("n_last_layers_ignore", "0", "convolutions at the end left alone")
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    WeightStandardization(
      ignore: Int(try p.double("n_last_layers_ignore", "a whole number >= 0") { $0 >= 0 && $0 == $0.rounded() }))
  }

  public let name = WeightStandardization.algorithmName
  public let events: Set<TrainingEvent> = [.initialize]
  public let ignore: Int
  public init(ignore: Int) { self.ignore = ignore }

  /// The function form: standardizes all but the last `ignore` convolutions; returns how
  /// many the model has and how many now standardize.
  @discardableResult
  public static func apply(to network: Network<Float>, ignore: Int) -> (convolutions: Int, standardized: Int) {
    let convs = network.convolutions.map(\.1)
    let n = max(convs.count - ignore, 0)
    for c in convs.prefix(n) { c.standardizesWeights = true }
    return (convs.count, n)
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    let r = Self.apply(to: network, ignore: ignore)
    guard r.convolutions > 0 else {
      throw EngineError("--algorithms weight_standardization needs convolutions; \(network.name) has none")
    }
    if r.standardized == 0 {
      warnChangesNothing(name, "n_last_layers_ignore=\(ignore) leaves out all \(r.convolutions) convolutions")
    }
    return network
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {}
}
