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
