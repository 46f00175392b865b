import Datasets
import Engine
import NN

/// Loss and accuracy of a network on a data set: the one evaluation every caller uses
/// (the trainer, interpolation curves). Returns values, never tensors the network owns, so
/// a later forward pass cannot change a result a caller holds.
public enum Evaluation {
  public struct Result: Sendable, Equatable {
    /// Mean cross-entropy.
    public var loss: Double
    /// Fractions in [0, 1].
    public var accuracy: Double
    /// Misclassified fraction, `(count - correct) / count` (not `1 - accuracy`, which rounds).
    public var error: Double { Double(count - correct) / Double(count) }
    public var correct: Int
    public var count: Int
  }

  /// Evaluates `net` in evaluation mode (restoring its mode afterwards) on `indices` of `ds`
  /// (nil: all), in batches of `batchSize` (unaugmented, normalised). `scratch` holds the
  /// input batch (pass one to avoid an allocation per call).
  public static func evaluate(
    _ net: Network<Float>, on ds: Dataset, indices: [Int]? = nil, batchSize: Int = 500,
    scratch: Tensor<Float> = Tensor<Float>(zeros: [0])
  ) throws -> Result {
    let wasTraining = net.body.isTraining
    net.setTraining(false)
    defer { net.setTraining(wasTraining) }
    let all = indices ?? Array(0..<ds.count)
    guard !all.isEmpty else { throw EngineError("evaluation on an empty data set") }
    var lossSum = 0.0
    var correct = 0
    var i = 0
    while i < all.count {
      let j = min(i + batchSize, all.count)
      let labels = ds.gather(
        all[i..<j], into: scratch, featureMajor: net.prefersFeatureMajorInput(batch: j - i))
      let r = try net.evaluate(input: scratch, labels: labels)
      lossSum += r.loss * Double(j - i)
      correct += r.correct
      i = j
    }
    return Result(
      loss: lossSum / Double(all.count), accuracy: Double(correct) / Double(all.count), correct: correct,
      count: all.count)
  }
}

/// Batch-norm running statistics re-estimated from data: what LMC does at every point of a
/// path (``Analysis/Interpolation``) and SWA does once its average replaces the weights.
public enum BatchNormStatistics {
  /// Re-estimates every batch norm's running statistics on `data[indices]` in batches of
  /// `batchSize`: the cumulative average of the batch means and (unbiased) variances
  /// (PyTorch's `update_bn`). The network is left in evaluation mode.
  public static func recompute(
    _ net: Network<Float>, on data: Dataset, indices: [Int], batchSize: Int = 500, scratch: Tensor<Float>
  ) throws {
    let norms = net.body.namedModules().compactMap { $0.1 as? BatchNorm<Float> }
    guard !norms.isEmpty else { return }
    let saved = norms.map(\.momentum)
    defer { for (n, m) in zip(norms, saved) { n.momentum = m } }
    for n in norms {
      n.runningMean.zero()
      n.runningVar.buffer.update(repeating: 1)
    }
    net.setTraining(true)
    defer { net.setTraining(false) }
    var i = 0
    var batch = 0
    while i < indices.count {
      let j = min(i + batchSize, indices.count)
      for n in norms { n.momentum = 1 / Float(batch + 1) }
      _ = data.gather(indices[i..<j], into: scratch)
      _ = try net.forward(scratch)
      batch += 1
      i = j
    }
  }
}
