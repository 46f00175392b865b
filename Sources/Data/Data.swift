/// # Data: data sets, readers, augmentation and batching
///
/// A ``Dataset`` is a set of examples held in memory as `Float` NCHW images plus `Int32`
/// labels. ``Synthetic`` builds deterministic, learnable data of any shape for tests and
/// benchmarks: class `k` has a prototype image drawn from `(seed, "synthetic-prototype", k)`
/// and each example is its prototype plus Gaussian noise from `(seed, "synthetic-example", i)`.
import Engine

/// Examples in memory: `images` is `[count, C, H, W]` in C order, `labels[i]` in `0..<classes`.
public struct Dataset: Sendable {
  public var name: String
  public var images: [Float]
  public var labels: [Int32]
  /// Per-example shape `[C, H, W]`.
  public var shape: [Int]
  public var classes: Int
  public var count: Int { labels.count }
  public var exampleSize: Int { shape.reduce(1, *) }

  public init(name: String, images: [Float], labels: [Int32], shape: [Int], classes: Int) {
    precondition(images.count == labels.count * shape.reduce(1, *), "images and labels disagree")
    self.name = name
    self.images = images
    self.labels = labels
    self.shape = shape
    self.classes = classes
  }

  /// Copies the examples `indices` into `x` (resized to `[n, C, H, W]`) and returns their labels.
  public func gather(_ indices: some Collection<Int>, into x: Tensor<Float>) -> [Int32] {
    let e = exampleSize
    x.resize([indices.count] + shape)
    var out: [Int32] = []
    out.reserveCapacity(indices.count)
    images.withUnsafeBufferPointer { src in
      for (k, i) in indices.enumerated() {
        (x.data + k * e).update(from: src.baseAddress! + i * e, count: e)
        out.append(labels[i])
      }
    }
    return out
  }
}

/// Deterministic, learnable synthetic data (class prototypes plus noise).
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
    return Dataset(name: "synthetic", images: images, labels: labels, shape: shape, classes: classes)
  }
}
