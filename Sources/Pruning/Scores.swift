import Engine
import NN

/// One score per weight of every prunable tensor, by tensor name (in the tensor's own
/// element order). Higher scores are kept; a method whose paper removes its *highest*
/// scores (GraSP) stores the negated score, and says so beside its formula.
public typealias Scores = [String: [Double]]

/// A batch of training examples for data-driven scores (SNIP, GraSP), in Float64.
public struct ScoreBatch {
  public let x: Tensor<Double>
  public let labels: [Int32]
  public init(x: Tensor<Double>, labels: [Int32]) {
    self.x = x
    self.labels = labels
  }
}

/// What a score sees: a Float64 copy of the network holding the weights to score with the
/// current mask applied (pruned weights are exactly zero), the mask, the data batch (nil for
/// data-free methods), a seed for random methods, and the round (1...rounds). The network is
/// scratch: a method may change its weights, gradients and batch-norm state.
public struct ScoringContext {
  public let network: Network<Double>
  public let mask: Mask
  public let batch: ScoreBatch?
  public let seed: UInt64
  public let round: Int
  public init(network: Network<Double>, mask: Mask, batch: ScoreBatch?, seed: UInt64, round: Int) {
    self.network = network
    self.mask = mask
    self.batch = batch
    self.seed = seed
    self.round = round
  }

  /// The batch, or an error naming the method that needs one.
  public func requireBatch(_ method: String) throws -> ScoreBatch {
    guard let batch else { throw PruningError("\(method) needs a batch of training data") }
    return batch
  }

  /// `f(w, g)` for every prunable weight, after `gradients()` filled each `grad`.
  public func perWeight(_ f: (Double, Double) -> Double) -> Scores {
    var out: Scores = [:]
    for (n, p) in network.prunableParameters {
      var s = [Double](repeating: 0, count: p.value.count)
      for i in 0..<s.count { s[i] = f(p.value[i], p.grad[i]) }
      out[n] = s
    }
    return out
  }
}

/// A pruning score: a function of (network, weights, data) returning one score per prunable
/// weight, higher kept. A new method is one new file in `Sources/Pruning/Methods` with a
/// type conforming to this protocol, plus its line in ``ScoreMethods/all``.
public protocol ScoreMethod: Sendable {
  /// The name on the command line (`--method`).
  var name: String { get }
  /// The formula and sign convention, one line (shown by `lth prune-init --help`).
  var formula: String { get }
  /// Whether it needs a batch of training data.
  var needsData: Bool { get }
  /// Rounds when `--rounds` is not given (SynFlow: 100, others 1).
  var defaultRounds: Int { get }
  func scores(_ context: ScoringContext) throws -> Scores
}

/// The registry of scores, by name.
public enum ScoreMethods {
  public static let all: [any ScoreMethod] = [
    RandomScore(), MagnitudeScore(), SNIPScore(), GraSPScore(), SynFlowScore(),
  ]
  public static var names: [String] { all.map(\.name) }
  public static func named(_ name: String) -> (any ScoreMethod)? { all.first { $0.name == name } }
}
