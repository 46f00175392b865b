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
  /// The process-wide thread count and the pool, behind one lock. When more threads are
  /// asked for, a bigger pool replaces the old one, which is retired once idle.
  private static let state = Locked<(threads: Int, pool: WorkerPool?)>((1, nil))

  /// A thread count for the current task only (``withThreads(_:_:)``), over the global one.
  @TaskLocal private static var taskThreads: Int? = nil

  /// Threads used by ``forEach(_:_:)`` (default 1): the task's ``withThreads(_:_:)`` value
  /// if any, else the process-wide value. Setting it sets the process-wide value and makes
  /// BLAS single-threaded inside each shard.
  public static var threads: Int {
    get { taskThreads ?? state.withLock { $0.threads } }
    set {
      precondition(newValue >= 1, "threads must be at least 1")
      ensurePool(newValue)
      state.withLock { $0.threads = newValue }
    }
  }

  /// Runs `body` with `threads` threads for parallel loops started by this task (and
  /// only this task), leaving the process-wide setting alone.
  public static func withThreads<R>(_ threads: Int, _ body: () throws -> R) rethrows -> R {
    precondition(threads >= 1, "threads must be at least 1")
    ensurePool(threads)
    return try $taskThreads.withValue(threads) { try body() }
  }

  private static func ensurePool(_ threads: Int) {
    BLASInfo.useSingleThreadedBLAS()
    let old: WorkerPool? = state.withLock { s in
      guard threads > 1 && (s.pool?.workers ?? 0) < threads - 1 else { return nil }
      let old = s.pool
      s.pool = WorkerPool(workers: threads - 1)
      return old
    }
    old?.retire()
  }

  /// Runs `body` and counts its parallel loops (this task's only) that ran serially on their
  /// caller because the pool was busy (another thread's job, or a loop nested in a shard).
  /// Same results either way; tests use it to check that a multi-threaded case really ran
  /// multi-threaded, and a loop of another test running at the same time is never counted.
  public static func countingFallbacks<R>(_ body: () throws -> R) rethrows -> (result: R, fallbacks: Int) {
    let counter = FallbackCounter()
    let r = try $taskFallbacks.withValue(counter) { try body() }
    return (r, counter.count.load(ordering: .relaxed))
  }
  final class FallbackCounter: Sendable { let count = Atomic<Int>(0) }
  @TaskLocal private static var taskFallbacks: FallbackCounter? = nil

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
    let (global, pool) = state.withLock { ($0.threads, $0.pool) }
    let threads = taskThreads ?? global
    guard count > 1, threads > 1, slots > 1, let pool else {
      for i in 0..<count { body(i, 0) }
      return
    }
    guard pool.tryAcquire() else {
      taskFallbacks?.count.wrappingAdd(1, ordering: .relaxed)
      for i in 0..<count { body(i, 0) }
      return
    }
    defer { pool.release() }
    withoutActuallyEscaping(body) {
      pool.run(count, participants: min(threads - 1, pool.workers, slots - 1), $0)
    }
  }

  /// Threads a parallel loop started now may use (slots for ``forEach(_:slots:_:)``).
  public static var slotCount: Int { threads }
}

/// Persistent worker threads that run one job at a time.
///
/// A job is an immutable snapshot (``Job``: shard count, participants, body, and its own
/// counters) published under a lock together with its generation number; a worker reads
/// the pair atomically, so it either takes part in exactly the job it was counted in or
/// stays out of it. The caller returns only when every shard is done and every counted
/// worker has acknowledged, so while a job is unfinished no newer one can be published: a
/// counted worker always finds its own job, and a straggler that was not counted holds at
/// most a finished job whose body has been cleared. Workers spin for a short while after a
/// job (training issues jobs back to back), then sleep; the caller's wait is a bounded spin
/// followed by `sched_yield`, so more threads than cores costs little.
final class WorkerPool: @unchecked Sendable {
  /// One job. `body` is written before publication and cleared by the caller after every
  /// counted worker acknowledged (release/acquire through `acks`), never touched by others.
  final class Job: @unchecked Sendable {
    let count: Int
    /// Workers `0..<participants` take part; the others never read `body`.
    let participants: Int
    var body: ((Int, Int) -> Void)?
    let next = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    let acks = Atomic<Int>(0)
    init(count: Int, participants: Int, body: @escaping (Int, Int) -> Void) {
      self.count = count
      self.participants = participants
      self.body = body
    }
  }

  let workers: Int
  /// The published job and its generation, read by workers as one snapshot.
  private let current = Locked<(generation: Int, job: Job?)>((0, nil))
  /// A copy of the published generation that workers can poll without the lock.
  private let generation = Atomic<Int>(0)
  private let busy = Atomic<Bool>(false)
  private let retired = Atomic<Bool>(false)
  private let sleepers = Atomic<Int>(0)
  private let condition = NSCondition()

  init(workers: Int) {
    self.workers = workers
    for id in 0..<workers {
      // Strong capture: the threads keep the pool alive until it is retired.
      let t = Thread { self.workerLoop(id) }
      t.stackSize = 1 << 22
      t.start()
    }
  }

  /// Claims the pool for one job; false when another job holds it.
  func tryAcquire() -> Bool {
    busy.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
  }
  func release() { busy.store(false, ordering: .releasing) }

  /// Stops the workers once the pool is idle (a replaced pool). A pool in use right now is
  /// left running: its workers go back to sleep after the job and are never woken again.
  func retire() {
    guard tryAcquire() else { return }  // never released: nobody can start a job again
    retired.store(true, ordering: .sequentiallyConsistent)
    publish(nil)
  }

  private func publish(_ job: Job?) {
    let g = current.withLock { s in
      s.generation += 1
      s.job = job
      return s.generation
    }
    // Publish first, then wake sleepers: a worker that registers as a sleeper after this
    // store re-checks `generation` under the condition's lock (no lost wake-up).
    generation.store(g, ordering: .sequentiallyConsistent)
    if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
      condition.lock()
      condition.broadcast()
      condition.unlock()
    }
  }

  private static func claim(_ job: Job, slot: Int) {
    guard let body = job.body else { return }
    while true {
      let i = job.next.wrappingAdd(1, ordering: .relaxed).oldValue
      if i >= job.count { return }
      body(i, slot)
      job.done.wrappingAdd(1, ordering: .releasing)
    }
  }

  /// Runs `body` over `0..<count` on the caller (slot 0) and workers `0..<participants`
  /// (slots 1...). The caller must hold the pool (``tryAcquire()``).
  func run(_ count: Int, participants: Int, _ body: @escaping (Int, Int) -> Void) {
    let job = Job(count: count, participants: min(participants, workers), body: body)
    publish(job)
    Self.claim(job, slot: 0)
    var spins = 0
    while job.done.load(ordering: .acquiring) < count
      || job.acks.load(ordering: .acquiring) < job.participants
    {
      spins += 1
      if spins > 4096 { _ = sched_yield() }
    }
    current.withLock { $0.job = nil }
    job.body = nil
  }

  private func workerLoop(_ id: Int) {
    var seen = 0
    while true {
      var spins = 0
      // `<=`, not `==`: the snapshot can be newer than the polled copy (the caller stores
      // the copy after publishing), and a worker must not take the same job twice.
      while generation.load(ordering: .acquiring) <= seen {
        spins += 1
        // A long enough polling window matters: LeNet's step has serial stretches (loss,
        // optimizer) between parallel loops; with half this window, about half of all
        // processes had workers falling asleep there and ran 2x slower (0.65 -> 1.4 ms).
        if spins < 200_000 { continue }
        condition.lock()
        sleepers.wrappingAdd(1, ordering: .sequentiallyConsistent)
        while generation.load(ordering: .sequentiallyConsistent) <= seen { condition.wait() }
        sleepers.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        condition.unlock()
      }
      let (g, job) = current.withLock { ($0.generation, $0.job) }
      seen = g
      if retired.load(ordering: .sequentiallyConsistent) { return }
      guard let job, id < job.participants else { continue }
      Self.claim(job, slot: id + 1)
      job.acks.wrappingAdd(1, ordering: .releasing)
    }
  }
}

/// A value behind a pthread mutex (`NSLock`). Unlike `Synchronization.Mutex` (futex-based on
/// Linux), ThreadSanitizer sees its happens-before edges, so `make tsan` checks the pool.
final class Locked<Value>: @unchecked Sendable {
  private let lock = NSLock()
  private var value: Value
  init(_ value: Value) { self.value = value }
  func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
    lock.lock()
    defer { lock.unlock() }
    return try body(&value)
  }
}

/// Wraps a value to cross a concurrency boundary the caller has proven safe (shards write
/// disjoint memory).
public struct UncheckedBox<V>: @unchecked Sendable {
  public let value: V
  public init(_ value: V) { self.value = value }
}
