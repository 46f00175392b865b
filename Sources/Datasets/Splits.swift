import Engine

/// Validation hold-out, subsampling and label randomisation of a training set.
///
/// All three use the fixed `splitSeed` (default 0), never the replicate's seed, so every
/// replicate of an experiment sees the same validation set and the same examples.
public struct Splits: Sendable, Equatable, Codable {
  /// Examples held out of the training set for validation (0: none).
  public var validationSize: Int = 0
  /// Fraction of the (remaining) training set to keep, in (0, 1].
  public var subsampleFraction: Double = 1
  /// Fraction of the training examples whose labels are replaced by random ones, in [0, 1].
  public var randomLabelsFraction: Double = 0
  public var splitSeed: UInt64 = 0

  public init(
    validationSize: Int = 0, subsampleFraction: Double = 1, randomLabelsFraction: Double = 0,
    splitSeed: UInt64 = 0
  ) {
    self.validationSize = validationSize
    self.subsampleFraction = subsampleFraction
    self.randomLabelsFraction = randomLabelsFraction
    self.splitSeed = splitSeed
  }

  /// Returns the training set and the validation set (nil when `validationSize` is 0).
  public func apply(to train: Dataset) throws -> (train: Dataset, validation: Dataset?) {
    guard validationSize >= 0, validationSize < train.count else {
      throw SettingError(
        "validation_size", "must be in 0..<\(train.count) for \(train.name), got \(validationSize)")
    }
    guard subsampleFraction > 0, subsampleFraction <= 1 else {
      throw SettingError("subsample_fraction", "must be in (0, 1], got \(subsampleFraction)")
    }
    guard randomLabelsFraction >= 0, randomLabelsFraction <= 1 else {
      throw SettingError("random_labels_fraction", "must be in [0, 1], got \(randomLabelsFraction)")
    }
    var splitStream = RandomStream(seed: splitSeed, purpose: "validation-split")
    var order = splitStream.permutation(train.count)
    var validation: Dataset? = nil
    if validationSize > 0 {
      validation = train.subset(order[0..<validationSize].sorted())
      order = Array(order[validationSize...])
    }
    var rest = order.sorted()
    if subsampleFraction < 1 {
      let keep = max(1, Int((subsampleFraction * Double(rest.count)).rounded(.down)))
      var r = RandomStream(seed: splitSeed, purpose: "subsample")
      let p = r.permutation(rest.count)
      rest = p[0..<keep].map { rest[$0] }.sorted()
    }
    var out = train.subset(rest)
    if randomLabelsFraction > 0 {
      let n = Int((randomLabelsFraction * Double(out.count)).rounded(.down))
      var r = RandomStream(seed: splitSeed, purpose: "random-labels")
      let p = r.permutation(out.count)
      for i in p[0..<n] { out.labels[i] = Int32(r.int(below: out.classes)) }
    }
    return (out, validation)
  }
}
