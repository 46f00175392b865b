import Dispatch

/// The threading model: fixed shards, any number of threads, fixed-order reductions.
///
/// A parallel loop over `count` shards runs shard `i` on thread `i % threads`; each shard's
/// work is a deterministic function of its inputs, and shards never race on outputs. The
/// number of shards is chosen by the caller from the problem size alone (see
/// ``batchShards(_:)``), so changing ``threads`` changes speed, never results.
public enum Parallel {
  nonisolated(unsafe) private static var _threads = 1

  /// Worker threads used by ``forEach(_:_:)`` (default 1). Set it once, before training.
  /// Setting it also makes BLAS single-threaded inside each shard.
  public static var threads: Int {
    get { _threads }
    set {
      precondition(newValue >= 1, "threads must be at least 1")
      _threads = newValue
      BLASInfo.useSingleThreadedBLAS()
    }
  }

  /// The fixed shard count for a batch of `n` examples: at most 8 shards, independent of
  /// the thread count (8 keeps 1, 2, 4 and 8 threads evenly loaded).
  public static let maxBatchShards = 8
  public static func batchShards(_ n: Int) -> Int { max(1, min(n, maxBatchShards)) }

  /// The half-open range of shard `s` when `n` items are split into `shards` parts.
  @inline(__always)
  public static func range(_ s: Int, of shards: Int, _ n: Int) -> Range<Int> {
    (s * n / shards)..<((s + 1) * n / shards)
  }

  /// Runs `body(shard)` for every shard in `0..<count`, spread over ``threads`` threads.
  public static func forEach(_ count: Int, _ body: (Int) -> Void) {
    let t = min(_threads, count)
    if t <= 1 {
      for i in 0..<count { body(i) }
      return
    }
    withoutActuallyEscaping(body) { body in
      let box = UncheckedBox(body)
      DispatchQueue.concurrentPerform(iterations: t) { worker in
        var i = worker
        while i < count {
          box.value(i)
          i += t
        }
      }
    }
  }
}

/// Wraps a value to cross a concurrency boundary the caller has proven safe (shards write
/// disjoint memory).
public struct UncheckedBox<V>: @unchecked Sendable {
  public let value: V
  public init(_ value: V) { self.value = value }
}
