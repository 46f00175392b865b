import Engine
import Foundation
import NN

/// Selective backprop (Jiang et al. 2019; Composer `selective_backprop`): on the steps
/// between `start` and `end` of the run (except every `interrupt`-th batch of an epoch), a
/// forward pass without gradients scores the batch's `N` examples by their loss, and the
/// step then trains on `int(keep * N)` of them, drawn without replacement with probability
/// proportional to `((r + 0.5) / N)^(1/keep - 1)` for the example of loss rank `r`
/// (0 = lowest): high-loss examples are kept more often. The scoring pass runs in training
/// mode, as Composer's (batch-norm running statistics take one more update). The step's
/// forward and backward passes then cost about `keep` of a full one.
public final class SelectiveBackprop: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "selective_backprop"
  public static let summary = "train on the high-loss fraction keep of each batch between start and end"
  public static let parameters = [
    AlgorithmParameter("start", "0.5", "fraction of the run where selection starts"),
    AlgorithmParameter("end", "0.9", "fraction of the run where it ends"),
    AlgorithmParameter("keep", "0.5", "fraction of each batch kept, in (0, 1]"),
    AlgorithmParameter("scale_factor", "1.0", "scoring at full resolution (the only one built)"),
    AlgorithmParameter("interrupt", "2", "every interrupt-th batch of an epoch trains on all examples (0: none)"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    let start = try p.double("start", "in [0, 1]") { $0 >= 0 && $0 <= 1 }
    let end = try p.double("end", "in [start, 1]") { $0 >= start && $0 <= 1 }
    _ = try p.double("scale_factor", "1.0 (scoring on downscaled images is not built)") { $0 == 1 }
    return SelectiveBackprop(
      start: start, end: end, keep: try p.double("keep", "in (0, 1]") { $0 > 0 && $0 <= 1 },
      interrupt: Int(try p.double("interrupt", "a whole number >= 0") { $0 >= 0 && $0 == $0.rounded() }))
  }

  public let name = SelectiveBackprop.algorithmName
  public let events: Set<TrainingEvent> = [.batchLoaded]
  public let start, end, keep: Double
  public let interrupt: Int
  private let subset = Tensor<Float>(zeros: [0])
  private let plain = Tensor<Float>(zeros: [0])
  public init(start: Double, end: Double, keep: Double, interrupt: Int) {
    (self.start, self.end, self.keep, self.interrupt) = (start, end, keep, interrupt)
  }

  /// Whether step `batch` of its epoch at fraction `t` of the run selects (Composer's
  /// `should_selective_backprop`).
  public func selects(at t: Double, batchInEpoch batch: Int) -> Bool {
    keep < 1 && start <= t && t < end && (interrupt == 0 || (batch + 1) % interrupt != 0)
  }

  /// The function form: which of the examples with per-example `losses` to keep (sorted
  /// indices), `int(keep * N)` of them drawn as the type's comment says from `random`.
  public static func select(losses: [Double], keep: Double, random: inout RandomStream) -> [Int] {
    let n = losses.count
    let order = losses.indices.sorted { losses[$0] < losses[$1] || (losses[$0] == losses[$1] && $0 < $1) }
    var weights = (0..<n).map { Foundation.pow((Double($0) + 0.5) / Double(n), 1 / keep - 1) }
    var chosen: [Int] = []
    for _ in 0..<Int(keep * Double(n)) {
      let total = weights.reduce(0, +)
      var u = random.uniform() * total
      var pick = n - 1
      for r in 0..<n where weights[r] > 0 {
        if u < weights[r] {
          pick = r
          break
        }
        u -= weights[r]
      }
      while weights[pick] == 0 { pick -= 1 }  // rounding at the top end
      weights[pick] = 0
      chosen.append(order[pick])
    }
    return chosen.sorted()
  }

  /// Per-example softmax cross-entropy of logits `[N, K]`.
  public static func losses(logits: Tensor<Float>, labels: [Int32]) -> [Double] {
    let k = logits.shape[1]
    return labels.indices.map { i in
      let z = logits.data + i * k
      return SoftCrossEntropy.logSumExp(z, k) - Double(z[Int(labels[i])])
    }
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    let ipe = state.loader.iterationsPerEpoch
    guard selects(at: Double(state.step) / Double(max(state.lastStep, 1)), batchInEpoch: state.step % ipe) else {
      return
    }
    let logits = try state.network.forward(state.input)
    let scores = Self.losses(logits: logits, labels: state.labels)
    var random = state.random(for: self)
    let keepIdx = Self.select(losses: scores, keep: keep, random: &random)
    guard !keepIdx.isEmpty else { return }
    // The kept examples as an NCHW batch (a feature-major batch is transposed back).
    let x = state.input
    let n = state.labels.count
    let shape = [n] + state.network.inputShape
    var source = x
    if let _ = x.layout.featureMajorBatch {
      let f = x.shape[0]
      plain.resize([n, f])
      for e in 0..<n { for i in 0..<f { plain.data[e * f + i] = x.data[i * x.shape[1] + e] } }
      source = plain
    }
    let per = source.count / n
    subset.resize([keepIdx.count] + Array(source.shape.count == 4 ? source.shape[1...] : shape[1...]))
    for (j, e) in keepIdx.enumerated() { (subset.data + j * per).update(from: source.data + e * per, count: per) }
    state.input = subset
    state.labels = keepIdx.map { state.labels[$0] }
  }
}
