/// # Data: data sets, readers, augmentation and batching
///
/// - ``Dataset``: examples in memory (raw bytes or floats) with per-channel normalisation
///   applied when a batch is gathered: `x = (pixel / 255 - mean[c]) / std[c]`.
/// - Readers: ``IDX`` (MNIST, Fashion-MNIST, KMNIST, EMNIST; plain or gzip through zlib) and
///   ``CIFAR`` (CIFAR-10 `data_batch_N.bin`/`test_batch.bin`, CIFAR-100 `train.bin`/`test.bin`).
/// - ``DatasetCatalog``: data sets by name (`fashion_mnist`, `mnist`, `cifar10`, `cifar100`,
///   `synthetic`), where to find them and how to get them.
/// - ``Splits``: validation hold-out, subsampling and random labels, all with fixed seeds.
/// - ``BatchLoader``: the batch for global step `s` is a pure function of
///   `(data-order seed, epoch, position)`: the epoch's order is a permutation drawn from
///   `(seed, "data-order", epoch)` and an example's augmentation from
///   `(seed, "augment", epoch << 32 | example)`. Any step can be reproduced without replaying
///   earlier ones. Batches are filled by the worker pool when a step asks for them.
import Engine

/// Errors for bad data: one line naming the file and the problem.
public struct DataError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// Examples in memory with labels in `0..<classes`.
public struct Dataset: Sendable {
  public enum Storage: Sendable {
    /// 8-bit pixels, scaled by 1/255 before normalisation.
    case bytes([UInt8])
    /// Floating-point values, normalised as they are.
    case floats([Float])
  }
  public var name: String
  public var storage: Storage
  public var labels: [Int32]
  /// Per-example shape `[C, H, W]`.
  public var shape: [Int]
  public var classes: Int
  /// Per-channel normalisation (identity: mean 0, std 1).
  public var mean: [Float]
  public var std: [Float]

  public var count: Int { labels.count }
  public var exampleSize: Int { shape.reduce(1, *) }

  public init(
    name: String, storage: Storage, labels: [Int32], shape: [Int], classes: Int,
    mean: [Float]? = nil, std: [Float]? = nil
  ) {
    self.name = name
    self.storage = storage
    self.labels = labels
    self.shape = shape
    self.classes = classes
    self.mean = mean ?? [Float](repeating: 0, count: shape[0])
    self.std = std ?? [Float](repeating: 1, count: shape[0])
  }

  /// The examples at `indices`, in that order.
  public func subset(_ indices: [Int]) -> Dataset {
    let e = exampleSize
    var out = self
    switch storage {
    case .bytes(let b):
      var nb = [UInt8]()
      nb.reserveCapacity(indices.count * e)
      for i in indices { nb.append(contentsOf: b[(i * e)..<((i + 1) * e)]) }
      out.storage = .bytes(nb)
    case .floats(let f):
      var nf = [Float]()
      nf.reserveCapacity(indices.count * e)
      for i in indices { nf.append(contentsOf: f[(i * e)..<((i + 1) * e)]) }
      out.storage = .floats(nf)
    }
    out.labels = indices.map { labels[$0] }
    return out
  }

  /// Writes example `i`, normalised, to `dst` (`exampleSize` values).
  @inline(__always)
  public func write(example i: Int, to dst: UnsafeMutablePointer<Float>) {
    let e = exampleSize
    let plane = e / shape[0]
    switch storage {
    case .bytes(let b):
      b.withUnsafeBufferPointer { src in
        let s = src.baseAddress! + i * e
        for c in 0..<shape[0] {
          Elementwise.affine(
            bytes: s + c * plane, count: plane, scale: 1 / (255 * std[c]), shift: -mean[c] / std[c],
            into: dst + c * plane)
        }
      }
    case .floats(let f):
      f.withUnsafeBufferPointer { src in
        let s = src.baseAddress! + i * e
        for c in 0..<shape[0] {
          let (m, sd) = (mean[c], std[c])
          for j in 0..<plane { dst[c * plane + j] = (s[c * plane + j] - m) / sd }
        }
      }
    }
  }

  /// Copies the examples `indices` (normalised, not augmented) into `x` (resized to
  /// `[n, C, H, W]`) and returns their labels.
  /// Examples are written in parallel (one shard each), so the bits never depend on the
  /// thread count.
  ///
  /// `featureMajor`: `x` becomes the flattened batch feature-major instead
  /// (``Engine/TensorLayout/featureMajor(batch:)``, `[C*H*W, n padded to 8]`), written 8
  /// examples at a time through a register transpose: what a first linear layer on sparse
  /// kernels reads as it is (``NN/Network/prefersFeatureMajorInput(batch:)``), so it needs
  /// no transpose pass of its own. The same values either way.
  public func gather(_ indices: some Collection<Int>, into x: Tensor<Float>, featureMajor: Bool = false)
    -> [Int32]
  {
    let indices = Array(indices)
    let e = exampleSize
    if featureMajor {
      let n = indices.count
      let ld = Sparse.paddedBatch(n)
      x.resize([e, ld])
      x.layout = .featureMajor(batch: n)
      let out = x.data
      Parallel.forEach(ld / 8) { b in
        let k0 = b * 8
        let k1 = min(n, k0 + 8)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8 * e) { scratch in
          let rows = scratch.baseAddress!
          for k in k0..<k1 { write(example: indices[k], to: rows + (k - k0) * e) }
          Sparse.transposeBlock(rows, rows: k1 - k0, cols: e, into: out + k0, ld: ld)
        }
      }
      return indices.map { labels[$0] }
    }
    x.resize([indices.count] + shape)
    let out = x.data
    let shards = Parallel.batchShards(indices.count)
    Parallel.forEach(shards) { shard in
      for k in Parallel.range(shard, of: shards, indices.count) {
        write(example: indices[k], to: out + k * e)
      }
    }
    return indices.map { labels[$0] }
  }
}

/// Deterministic, learnable synthetic data: class `k` has a prototype image drawn from
/// `(seed, "synthetic-prototype", k)`; example `i` is its prototype plus Gaussian noise
/// from `(seed, "synthetic-example", i)`.
public enum Synthetic {
  public static func make(
    count: Int, shape: [Int], classes: Int, seed: UInt64 = 0, noise: Double = 1.0
  ) -> Dataset {
    let e = shape.reduce(1, *)
    var protos = [Float](repeating: 0, count: classes * e)
    for k in 0..<classes {
      var r = RandomStream(seed: seed, purpose: "synthetic-prototype", index: UInt64(k))
      for j in 0..<e { protos[k * e + j] = Float(r.normal()) }
    }
    var images = [Float](repeating: 0, count: count * e)
    var labels = [Int32](repeating: 0, count: count)
    for i in 0..<count {
      var r = RandomStream(seed: seed, purpose: "synthetic-example", index: UInt64(i))
      let k = r.int(below: classes)
      labels[i] = Int32(k)
      for j in 0..<e { images[i * e + j] = protos[k * e + j] + Float(r.normal() * noise) }
    }
    return Dataset(
      name: "synthetic", storage: .floats(images), labels: labels, shape: shape, classes: classes)
  }
}
