import Dispatch
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
public final class BatchLoader: @unchecked Sendable {
  public let dataset: Dataset
  public let batchSize: Int
  public let seed: UInt64
  public let augment: Bool
  public let padding = 4
  private var cachedEpoch = -1
  private var order: [Int] = []
  private var scratch: [Float]
  private let padValues: [Float]
  // Prefetch: two slots, one being consumed, one being filled on `queue`.
  private let queue = DispatchQueue(label: "lotterykit.prefetch")
  private var slots = [Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0])]
  private var slotLabels: [[Int32]] = [[], []]
  private var pending: (step: Int, slot: Int, done: DispatchSemaphore)?
  private var nextSlot = 0

  public init(dataset: Dataset, batchSize: Int, seed: UInt64, augment: Bool) throws {
    guard batchSize > 0 else { throw DataError("batch size must be positive, got \(batchSize)") }
    guard dataset.count > 0 else { throw DataError("data set \(dataset.name) is empty") }
    self.dataset = dataset
    self.batchSize = batchSize
    self.seed = seed
    self.augment = augment
    scratch = [Float](repeating: 0, count: dataset.exampleSize)
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

  /// Writes the batch of step `s` into `x` and returns its labels (synchronously).
  public func fill(step s: Int, into x: Tensor<Float>) -> [Int32] {
    let idx = indices(step: s)
    guard augment else { return dataset.gather(idx, into: x) }
    let epoch = UInt64(s / iterationsPerEpoch)
    let e = dataset.exampleSize
    x.resize([idx.count] + dataset.shape)
    var labels: [Int32] = []
    scratch.withUnsafeMutableBufferPointer { buf in
      for (k, i) in idx.enumerated() {
        dataset.write(example: i, to: buf.baseAddress!)
        var r = RandomStream(seed: seed, purpose: "augment", index: epoch << 32 | UInt64(i))
        let dy = r.int(below: 2 * padding + 1)
        let dx = r.int(below: 2 * padding + 1)
        let flip = r.int(below: 2) == 1
        Augmentation.cropAndFlip(
          buf.baseAddress!, x.data + k * e, shape: dataset.shape, padding: padding,
          padValues: padValues, dy: dy, dx: dx, flip: flip)
        labels.append(dataset.labels[i])
      }
    }
    return labels
  }

  /// The batch of step `s`, prepared in the background while the previous step ran; starts
  /// preparing step `s + 1`. The tensor stays valid until the call after next.
  public func batch(step s: Int) -> (x: Tensor<Float>, labels: [Int32]) {
    var slot: Int
    if let p = pending, p.step == s {
      p.done.wait()
      slot = p.slot
    } else {
      pending?.done.wait()
      slot = nextSlot
      slotLabels[slot] = fill(step: s, into: slots[slot])
    }
    pending = nil
    let other = 1 - slot
    nextSlot = other
    let done = DispatchSemaphore(value: 0)
    pending = (s + 1, other, done)
    let box = UncheckedBox(self)
    queue.async {
      let me = box.value
      me.slotLabels[other] = me.fill(step: s + 1, into: me.slots[other])
      done.signal()
    }
    return (slots[slot], slotLabels[slot])
  }

  /// Waits for background work (call before discarding the loader).
  public func drain() {
    pending?.done.wait()
    pending = nil
  }
  deinit { drain() }
}
