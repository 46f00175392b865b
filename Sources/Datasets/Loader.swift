import Engine

/// CIFAR-style augmentation: pad each side by `padding` with the normalised value of a
/// black pixel (what torchvision's `RandomCrop(32, padding=4)` before `Normalize` gives),
/// take the crop at offset `(dy, dx)` in `0...2*padding`, and optionally flip horizontally.
public enum Augmentation {
  public static func cropAndFlip(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, shape: [Int], padding: Int,
    padValues: [Float], dy: Int, dx: Int, flip: Bool
  ) {
    let (c, h, w) = (shape[0], shape[1], shape[2])
    for ch in 0..<c {
      for i in 0..<h {
        let si = i + dy - padding
        for j in 0..<w {
          let jj = flip ? w - 1 - j : j
          let sj = jj + dx - padding
          dst[(ch * h + i) * w + j] =
            (si >= 0 && si < h && sj >= 0 && sj < w) ? src[(ch * h + si) * w + sj] : padValues[ch]
        }
      }
    }
  }
}

/// Batches for training: the batch of global step `s` depends only on the seed, the epoch
/// `s / iterationsPerEpoch` and the position in it. The last partial batch of an epoch is
/// kept (`iterationsPerEpoch = ceil(count / batchSize)`).
///
/// A batch is filled when it is asked for, by the worker pool, each example by one shard
/// (so the bits never depend on the thread count). There is no prefetch thread: on a
/// 2-core machine a third thread waking every step preempts one of the two compute threads
/// in the middle of a parallel loop, and a LeNet step waited 60 us for a batch that takes
/// 10 us to fill in parallel.
public final class BatchLoader: @unchecked Sendable {
  public let dataset: Dataset
  public let batchSize: Int
  public let seed: UInt64
  public let augment: Bool
  public let padding = 4
  /// Write batches feature-major (see ``Dataset/gather(_:into:featureMajor:)``); not with
  /// augmentation, whose batches are images for convolutions.
  public var featureMajor = false
  private var cachedEpoch = -1
  private var order: [Int] = []
  private let padValues: [Float]
  private let buffer = Tensor<Float>(zeros: [0])

  public init(dataset: Dataset, batchSize: Int, seed: UInt64, augment: Bool) throws {
    guard batchSize > 0 else { throw DataError("batch size must be positive, got \(batchSize)") }
    guard dataset.count > 0 else { throw DataError("data set \(dataset.name) is empty") }
    self.dataset = dataset
    self.batchSize = batchSize
    self.seed = seed
    self.augment = augment
    padValues = zip(dataset.mean, dataset.std).map { -$0 / $1 }
  }

  /// `ceil(count / batchSize)`.
  public var iterationsPerEpoch: Int { (dataset.count + batchSize - 1) / batchSize }

  /// The example indices of step `s`, in order.
  public func indices(step s: Int) -> ArraySlice<Int> {
    let epoch = s / iterationsPerEpoch
    if epoch != cachedEpoch {
      var r = RandomStream(seed: seed, purpose: "data-order", index: UInt64(epoch))
      order = r.permutation(dataset.count)
      cachedEpoch = epoch
    }
    let b = (s % iterationsPerEpoch) * batchSize
    return order[b..<min(b + batchSize, dataset.count)]
  }

  /// Writes the batch of step `s` into `x` and returns its labels.
  public func fill(step s: Int, into x: Tensor<Float>) -> [Int32] {
    let idx = Array(indices(step: s))
    guard augment else { return dataset.gather(idx, into: x, featureMajor: featureMajor) }
    let epoch = UInt64(s / iterationsPerEpoch)
    let e = dataset.exampleSize
    x.resize([idx.count] + dataset.shape)
    let (out, shape, padding, padValues, seed) = (x.data, dataset.shape, padding, padValues, seed)
    let shards = Parallel.batchShards(idx.count)
    Parallel.forEach(shards) { shard in
      withUnsafeTemporaryAllocation(of: Float.self, capacity: e) { scratch in
        for k in Parallel.range(shard, of: shards, idx.count) {
          let i = idx[k]
          dataset.write(example: i, to: scratch.baseAddress!)
          var r = RandomStream(seed: seed, purpose: "augment", index: epoch << 32 | UInt64(i))
          let dy = r.int(below: 2 * padding + 1)
          let dx = r.int(below: 2 * padding + 1)
          let flip = r.int(below: 2) == 1
          Augmentation.cropAndFlip(
            scratch.baseAddress!, out + k * e, shape: shape, padding: padding,
            padValues: padValues, dy: dy, dx: dx, flip: flip)
        }
      }
    }
    return idx.map { dataset.labels[$0] }
  }

  /// The batch of step `s`, in a buffer the loader reuses: it stays valid until the next
  /// call.
  public func batch(step s: Int) -> (x: Tensor<Float>, labels: [Int32]) {
    let labels = fill(step: s, into: buffer)
    return (buffer, labels)
  }
}
