import Dispatch
import Foundation
import Synchronization

/// The threading model: fixed shards, any number of threads, fixed-order reductions.
///
/// A parallel loop over `count` shards hands shards to ``threads`` threads (the caller
/// plus a persistent pool of workers that spin briefly, then sleep); each shard's work is
/// a deterministic function of its inputs, and shards never race on outputs. The number of
/// shards is chosen by the caller from the problem size alone (see ``batchShards(_:)``),
/// so changing ``threads`` changes speed, never results. BLAS runs single-threaded inside
/// each shard (``BLASInfo/useSingleThreadedBLAS()``).
public enum Parallel {
  /// The thread count and the pool, behind one lock. A pool is never stopped: when more
  /// threads are asked for, a bigger pool replaces it and the old one's workers sleep.
  private static let state = Mutex<(threads: Int, pool: WorkerPool?)>((1, nil))

  /// Threads used by ``forEach(_:_:)`` (default 1). Setting it also makes BLAS
  /// single-threaded inside each shard.
  public static var threads: Int {
    get { state.withLock { $0.threads } }
    set {
      precondition(newValue >= 1, "threads must be at least 1")
      BLASInfo.useSingleThreadedBLAS()
      state.withLock { s in
        s.threads = newValue
        if newValue > 1 && (s.pool?.workers ?? 0) < newValue - 1 {
          s.pool = WorkerPool(workers: newValue - 1)
        }
      }
    }
  }

  /// The fixed shard count for a batch of `n` examples: at most 8 shards, independent of
  /// the thread count (8 keeps 1, 2, 4 and 8 threads evenly loaded).
  public static let maxBatchShards = 8
  public static func batchShards(_ n: Int) -> Int { max(1, min(n, maxBatchShards)) }
  /// Fixed shard count for dense (fully-connected) layers, cut along features.
  public static let denseShards = 2

  /// The half-open range of shard `s` when `n` items are split into `shards` parts.
  @inline(__always)
  public static func range(_ s: Int, of shards: Int, _ n: Int) -> Range<Int> {
    (s * n / shards)..<((s + 1) * n / shards)
  }

  /// Runs `body(shard)` for every shard in `0..<count`, spread over ``threads`` threads.
  /// A call made while the pool is busy (from another thread, or from inside a shard) runs
  /// its shards serially on the calling thread: same results, no interference.
  public static func forEach(_ count: Int, _ body: (Int) -> Void) {
    forEach(count, slots: Int.max) { i, _ in body(i) }
  }

  /// Like ``forEach(_:_:)``, and also tells each shard which of at most `slots` threads runs
  /// it (`0..<slots`; the calling thread is slot 0). Shards on the same slot never overlap,
  /// so per-slot scratch buffers suffice: memory grows with threads, not with shards.
  public static func forEach(_ count: Int, slots: Int, _ body: (_ shard: Int, _ slot: Int) -> Void) {
    let (threads, pool) = state.withLock { ($0.threads, $0.pool) }
    guard count > 1, threads > 1, slots > 1, let pool, pool.tryAcquire() else {
      for i in 0..<count { body(i, 0) }
      return
    }
    defer { pool.release() }
    withoutActuallyEscaping(body) {
      pool.run(count, participants: min(threads - 1, pool.workers, slots - 1), $0)
    }
  }

  /// Threads a parallel loop started now may use (slots for ``forEach(_:slots:_:)``).
  public static var slotCount: Int { state.withLock { $0.threads } }
}

/// Persistent worker threads. A job is published by bumping `generation`; every thread
/// (the caller included) claims shard indices from `next` until none are left, and every
/// worker acknowledges the job before the caller returns, so no worker can straggle into
/// the next job. Workers spin for a short while after a job (training issues jobs back to
/// back), then sleep.
final class WorkerPool: @unchecked Sendable {
  private let generation = Atomic<Int>(0)
  private let next = Atomic<Int>(0)
  private let done = Atomic<Int>(0)
  private let acks = Atomic<Int>(0)
  private let busy = Atomic<Bool>(false)
  /// Workers `0..<participants` take part in the current job.
  private var participants = 0
  let workers: Int
  private let sleepers = Atomic<Int>(0)
  private let condition = NSCondition()
  private var job: ((Int, Int) -> Void)?
  private var count = 0
  private var threads: [Thread] = []

  init(workers: Int) {
    self.workers = workers
    for id in 0..<workers {
      let t = Thread { [unowned self] in self.workerLoop(id) }
      t.stackSize = 1 << 22
      threads.append(t)
      t.start()
    }
  }

  /// Claims the pool for one job; false when another job holds it.
  func tryAcquire() -> Bool {
    busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
  }
  func release() { busy.store(false, ordering: .releasing) }

  private func claim(slot: Int) {
    while true {
      let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
      if i >= count { return }
      job!(i, slot)
      done.wrappingAdd(1, ordering: .releasing)
    }
  }

  func run(_ count: Int, participants: Int, _ body: @escaping (Int, Int) -> Void) {
    job = body
    self.count = count
    self.participants = participants
    next.store(0, ordering: .relaxed)
    done.store(0, ordering: .relaxed)
    acks.store(0, ordering: .relaxed)
    // Publish first, then wake sleepers: a worker that registers as a sleeper after this
    // load re-checks `generation` under the lock and sees the new job (no lost wake-up).
    generation.wrappingAdd(1, ordering: .sequentiallyConsistent)
    if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
      condition.lock()
      condition.broadcast()
      condition.unlock()
    }
    claim(slot: 0)
    while done.load(ordering: .acquiring) < count || acks.load(ordering: .acquiring) < participants {}
    job = nil
  }

  private func workerLoop(_ id: Int) {
    // Generations start at 0: a worker that starts after the first job was published still
    // sees it as new.
    var seen = 0
    while true {
      var spins = 0
      while generation.load(ordering: .acquiring) == seen {
        spins += 1
        if spins < 200_000 { continue }
        condition.lock()
        sleepers.wrappingAdd(1, ordering: .sequentiallyConsistent)
        while generation.load(ordering: .sequentiallyConsistent) == seen { condition.wait() }
        sleepers.wrappingSubtract(1, ordering: .releasing)
        condition.unlock()
      }
      seen = generation.load(ordering: .acquiring)
      // The caller publishes `job`, `count` and `participants` before bumping `generation`.
      if id < participants {
        claim(slot: id + 1)
        acks.wrappingAdd(1, ordering: .releasing)
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
