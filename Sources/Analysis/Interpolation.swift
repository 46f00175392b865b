/// # Analysis: linear mode connectivity (instability) and, later, scaling-law fits
///
/// ``Interpolation`` evaluates `W(a) = W1 + a (W2 - W1)` (that is, `(1 - a) W1 + a W2`) along a line between two weight
/// sets of one architecture (sharing a mask), with batch norm handled in one of two
/// labelled ways (``BatchNormMode``), and ``Curve`` holds the errors, losses and barriers.
/// ``LMCRunner`` (LMC.swift) runs the instability experiment of Frankle et al. (2020):
/// a parent trained to spawn step k, children trained from its full checkpoint with other
/// data orders, every pair of children interpolated. ``LMCResults`` summarises a run.
import Datasets
import Engine
import Foundation
import NN
import Pruning
import Training

/// How batch norm is treated along the line.
public enum BatchNormMode: String, Codable, Sendable, CaseIterable {
  /// Running statistics interpolated like every other tensor (the paper).
  case interpolate
  /// Running statistics re-estimated at every point on training batches, as a cumulative
  /// average of batch statistics (PyTorch's `update_bn`); the default.
  case recompute
}

/// One interpolation curve: per point `alpha`, errors (fractions) and losses.
public struct Curve: Codable, Sendable, Equatable {
  public var alpha: [Double]
  public var testError: [Double]
  public var testLoss: [Double]
  public var trainError: [Double]
  public var trainLoss: [Double]
  public var bn: BatchNormMode

  /// `max_a E(a) - mean(E(0), E(1))`.
  public static func barrier(_ e: [Double]) -> Double { e.max()! - (e.first! + e.last!) / 2 }
  public var testErrorBarrier: Double { Self.barrier(testError) }
  public var trainErrorBarrier: Double { Self.barrier(trainError) }
  public var testLossBarrier: Double { Self.barrier(testLoss) }
  public var trainLossBarrier: Double { Self.barrier(trainLoss) }

  enum CodingKeys: String, CodingKey {
    case alpha, bn
    case testError = "test_error"
    case testLoss = "test_loss"
    case trainError = "train_error"
    case trainLoss = "train_loss"
  }

  /// The curve of `lth interpolate --json`, and each pair's curve in `interpolation.json`:
  /// the points, their barriers and (inside an LMC run) where the pair comes from.
  public func record(pair: String? = nil, replicate: Int? = nil, k: Int? = nil) -> CurveRecord {
    CurveRecord(
      replicate: replicate, pair: pair, k: k, bn: bn.rawValue, alpha: alpha, testError: testError,
      testLoss: testLoss, trainError: trainError, trainLoss: trainLoss, testErrorBarrier: testErrorBarrier,
      trainErrorBarrier: trainErrorBarrier, testLossBarrier: testLossBarrier,
      trainLossBarrier: trainLossBarrier)
  }
}

/// One interpolation curve as JSON (`lth interpolate --json`, the `curves` of
/// `interpolation.json` and of `lth results` on an LMC run). Barriers are nil only in files
/// that lack them.
public struct CurveRecord: Codable, Equatable, Sendable {
  public var replicate: Int?
  public var pair: String?
  public var k: Int?
  public var bn: String?
  public var alpha: [Double]
  public var testError: [Double]
  public var testLoss: [Double]
  public var trainError: [Double]
  public var trainLoss: [Double]
  @Nullable public var testErrorBarrier: Double?
  @Nullable public var trainErrorBarrier: Double?
  @Nullable public var testLossBarrier: Double?
  @Nullable public var trainLossBarrier: Double?

  public init(
    replicate: Int? = nil, pair: String? = nil, k: Int? = nil, bn: String? = nil, alpha: [Double] = [],
    testError: [Double] = [], testLoss: [Double] = [], trainError: [Double] = [], trainLoss: [Double] = [],
    testErrorBarrier: Double? = nil, trainErrorBarrier: Double? = nil, testLossBarrier: Double? = nil,
    trainLossBarrier: Double? = nil
  ) {
    (self.replicate, self.pair, self.k, self.bn) = (replicate, pair, k, bn)
    (self.alpha, self.testError, self.testLoss, self.trainError, self.trainLoss) =
      (alpha, testError, testLoss, trainError, trainLoss)
    self.testErrorBarrier = testErrorBarrier
    self.trainErrorBarrier = trainErrorBarrier
    self.testLossBarrier = testLossBarrier
    self.trainLossBarrier = trainLossBarrier
  }

  enum CodingKeys: String, CodingKey {
    case replicate, pair, k, bn, alpha
    case testError = "test_error"
    case testLoss = "test_loss"
    case trainError = "train_error"
    case trainLoss = "train_loss"
    case testErrorBarrier = "test_error_barrier"
    case trainErrorBarrier = "train_error_barrier"
    case testLossBarrier = "test_loss_barrier"
    case trainLossBarrier = "train_loss_barrier"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    replicate = try c.decodeIfPresent(Int.self, forKey: .replicate)
    pair = try c.decodeIfPresent(String.self, forKey: .pair)
    k = try c.decodeIfPresent(Int.self, forKey: .k)
    bn = try c.decodeIfPresent(String.self, forKey: .bn)
    alpha = try c.decodeIfPresent([Double].self, forKey: .alpha) ?? []
    testError = try c.decodeIfPresent([Double].self, forKey: .testError) ?? []
    testLoss = try c.decodeIfPresent([Double].self, forKey: .testLoss) ?? []
    trainError = try c.decodeIfPresent([Double].self, forKey: .trainError) ?? []
    trainLoss = try c.decodeIfPresent([Double].self, forKey: .trainLoss) ?? []
    testErrorBarrier = try c.decodeIfPresent(Double.self, forKey: .testErrorBarrier)
    trainErrorBarrier = try c.decodeIfPresent(Double.self, forKey: .trainErrorBarrier)
    testLossBarrier = try c.decodeIfPresent(Double.self, forKey: .testLossBarrier)
    trainLossBarrier = try c.decodeIfPresent(Double.self, forKey: .trainLossBarrier)
  }
}

/// Evaluates networks on the line between two weight sets (see the module comment).
///
/// The interpolated weights are written into one preallocated network (`net`): no
/// allocation per point. Points run one after another; each evaluation is sharded over
/// the batch like training, with the fastest kernels of the network's backend.
public final class Interpolation {
  public let net: Network<Float>
  let w1: [Tensor<Float>]
  let w2: [Tensor<Float>]
  let b1: [Tensor<Float>]
  let b2: [Tensor<Float>]
  let mask: Mask?
  private let scratch = Tensor<Float>(zeros: [0])

  /// `a` and `b` hold the two endpoints (same architecture as `net`); `mask` (optional)
  /// must be shared by both: each endpoint must be zero wherever it prunes.
  public init(net: Network<Float>, a: Network<Float>, b: Network<Float>, mask: Mask?) throws {
    guard a.parameters.map(\.0) == net.parameters.map(\.0), b.parameters.map(\.0) == net.parameters.map(\.0)
    else { throw EngineError("interpolation: the two models have different tensors") }
    self.net = net
    w1 = a.parameters.map { $0.1.value.clone() }
    w2 = b.parameters.map { $0.1.value.clone() }
    b1 = a.buffers.map { $0.1.clone() }
    b2 = b.buffers.map { $0.1.clone() }
    self.mask = mask
    if let mask {
      for (k, (n, p)) in net.parameters.enumerated() where p.isPrunable {
        guard let m = mask.values[n], m.count == p.value.count else {
          throw EngineError("interpolation: the mask has no tensor \(n) of shape \(p.value.shape)")
        }
        for i in 0..<m.count where m[i] == 0 && (w1[k][i] != 0 || w2[k][i] != 0) {
          throw EngineError(
            "interpolation: the endpoints do not share the mask (\(n)[\(i)] is pruned but \(w1[k][i] != 0 ? "A" : "B") has \(w1[k][i] != 0 ? w1[k][i] : w2[k][i]))"
          )
        }
      }
      // Every point on the line keeps the mask: pruned layers evaluate on sparse kernels
      // (by the network's policy). The mask tensors are set once, so each layer builds its
      // sparse plan once for the whole curve.
      try mask.apply(to: net)
    } else {
      for (_, p) in net.parameters { p.mask = nil }
    }
  }

  /// Writes `W(alpha) = W1 + alpha (W2 - W1)` into ``net`` (in exact arithmetic
  /// `(1 - alpha) W1 + alpha W2`; this form gives `W1` exactly when `W1 == W2`), and the
  /// running statistics the same way (replaced by re-estimated ones under `.recompute`).
  public func set(alpha: Double, bn: BatchNormMode) {
    let a = Float(alpha)
    for (k, (_, p)) in net.parameters.enumerated() {
      let (x, y, out) = (w1[k], w2[k], p.value)
      // a = 0 and a = 1 give the endpoints' bits exactly.
      if alpha == 0 {
        out.copy(from: x)
      } else if alpha == 1 {
        out.copy(from: y)
      } else {
        for i in 0..<out.count { out[i] = x[i] + a * (y[i] - x[i]) }
      }
    }
    for (k, (_, b)) in net.buffers.enumerated() {
      if alpha == 0 {
        b.copy(from: b1[k])
      } else if alpha == 1 {
        b.copy(from: b2[k])
      } else {
        for i in 0..<b.count { b[i] = b1[k][i] + a * (b2[k][i] - b1[k][i]) }
      }
    }
  }

  /// Re-estimates every batch norm's running statistics on `data[indices]` in batches of
  /// `batchSize`: the cumulative average of the batch means and (unbiased) variances.
  public func recomputeBatchNorm(on data: Dataset, indices: [Int], batchSize: Int = 500) throws {
    try BatchNormStatistics.recompute(net, on: data, indices: indices, batchSize: batchSize, scratch: scratch)
  }

  /// The curve at `points` evenly spaced values of alpha in [0, 1] (endpoints included).
  /// `trainIndices` is the fixed training subset evaluated (and, with `.recompute`, used
  /// for the batch-norm statistics: its first `bnExamples` examples).
  public func curve(
    points: Int, bn: BatchNormMode, test: Dataset, train: Dataset, trainIndices: [Int], bnExamples: Int = 2000
  ) throws -> Curve {
    guard points >= 2 else { throw SettingError("points", "must be at least 2, got \(points)") }
    var c = Curve(alpha: [], testError: [], testLoss: [], trainError: [], trainLoss: [], bn: bn)
    let hasBN = net.body.namedModules().contains { $0.1 is BatchNorm<Float> }
    for p in 0..<points {
      let alpha = Double(p) / Double(points - 1)
      set(alpha: alpha, bn: bn)
      if bn == .recompute && hasBN {
        try recomputeBatchNorm(on: train, indices: Array(trainIndices.prefix(bnExamples)))
      }
      let t = try Evaluation.evaluate(net, on: test, scratch: scratch)
      let r = try Evaluation.evaluate(net, on: train, indices: trainIndices, scratch: scratch)
      c.alpha.append(alpha)
      c.testError.append(t.error)
      c.testLoss.append(t.loss)
      c.trainError.append(r.error)
      c.trainLoss.append(r.loss)
    }
    return c
  }

  /// The fixed training subset: the first `size` examples of a permutation drawn from
  /// `(seed, "train-eval")`, sorted (the same for every curve of a run).
  public static func trainSubset(count: Int, size: Int, seed: UInt64) -> [Int] {
    var r = RandomStream(seed: seed, purpose: "train-eval")
    return Array(r.permutation(count).prefix(min(size, count))).sorted()
  }
}
