import Dispatch
import Engine
import Foundation
import Synchronization
import TestSupport
import Testing

/// A small deterministic generator for job shapes.
private struct SplitMix {
  var state: UInt64
  mutating func next(_ n: Int) -> Int {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return Int((z ^ (z >> 31)) % UInt64(n))
  }
}

/// Shared state of a stress run: which job is in flight, and what went wrong.
private final class Probe: @unchecked Sendable {
  let active = Atomic<Int>(-1)
  let late = Atomic<Int>(0)  // shards that ran outside their caller's forEach
  let badSlot = Atomic<Int>(0)
  let counts = UnsafeMutablePointer<Int>.allocate(capacity: 64)
  deinit { counts.deallocate() }
}

@Suite("Worker pool")
struct ParallelTests {
  /// Back-to-back jobs of random size, slot limit and so participant count, at thread
  /// counts up to 6x the cores: every shard runs exactly once per job, on a slot within the
  /// limit, and never after its caller returned. Run under ThreadSanitizer by `make tsan`.
  @Test("stress: every shard exactly once, never after the caller returned", arguments: [2, 3, 5, 12])
  func stress(threads: Int) {
    let probe = Probe()
    var rng = SplitMix(state: UInt64(threads))
    var failures = 0
    withExclusiveThreads(threads) {
      for job in 0..<2000 {
        let count = 1 + rng.next(40)
        let slots = 1 + rng.next(10)
        let work = rng.next(3) * 200
        probe.counts.initialize(repeating: 0, count: count)
        probe.active.store(job, ordering: .sequentiallyConsistent)
        Parallel.forEach(count, slots: slots) { s, slot in
          if probe.active.load(ordering: .sequentiallyConsistent) != job {
            probe.late.wrappingAdd(1, ordering: .relaxed)
          }
          if slot < 0 || slot >= min(slots, threads) { probe.badSlot.wrappingAdd(1, ordering: .relaxed) }
          var x = 0.0
          for i in 0..<work { x += Double(i) }
          if x < 0 { print(x) }
          probe.counts[s] += 1
        }
        probe.active.store(-1, ordering: .sequentiallyConsistent)
        if !(0..<count).allSatisfy({ probe.counts[$0] == 1 }) { failures += 1 }
      }
    }
    #expect(failures == 0)
    #expect(probe.late.load(ordering: .relaxed) == 0)
    #expect(probe.badSlot.load(ordering: .relaxed) == 0)
  }

  @Test("a pool replaced by a bigger one, right after it started, neither traps nor hangs")
  func replacement() {
    withExclusivePool {
      for round in 0..<3 {
        for t in 2...(12 + round) {
          let hits = Atomic<Int>(0)
          Parallel.withThreads(t) {
            Parallel.forEach(3 * t) { _ in hits.wrappingAdd(1, ordering: .relaxed) }
          }
          #expect(hits.load(ordering: .relaxed) == 3 * t)
        }
      }
    }
  }

  @Test("every shard runs exactly once, also when several threads use the pool at once")
  func concurrentCallers() {
    let callers = 4
    let shards = 37
    let counts = UnsafeMutablePointer<Int>.allocate(capacity: callers * shards)
    counts.initialize(repeating: 0, count: callers * shards)
    defer { counts.deallocate() }
    let box = UncheckedBox(counts)
    withExclusivePool {
      for _ in 0..<200 {
        DispatchQueue.concurrentPerform(iterations: callers) { c in
          Parallel.withThreads(2) {
            Parallel.forEach(shards) { s in box.value[c * shards + s] += 1 }
          }
        }
      }
    }
    #expect((0..<(callers * shards)).allSatisfy { counts[$0] == 200 })
  }

  @Test("a thread count set for one task is not seen by other tasks")
  func taskLocal() async {
    let outside = Parallel.threads
    await withTaskGroup(of: Int.self) { group in
      group.addTask { Parallel.withThreads(7) { Parallel.threads } }
      group.addTask { Parallel.threads }
      var seen: [Int] = []
      for await t in group { seen.append(t) }
      #expect(seen.sorted() == [outside, 7].sorted())
    }
  }

  @Test("changing the thread count between jobs neither hangs nor changes results")
  func changingThreads() throws {
    let x = Tensor<Float>((0..<(64 * 50)).map { Float($0 % 13) - 6 }, shape: [64, 50])
    let w = Tensor<Float>((0..<(40 * 50)).map { Float($0 % 7) - 3 }, shape: [40, 50])
    var outputs: [[Float]] = []
    for t in [1, 2, 3, 2, 1, 4] {
      withExclusiveThreads(t) {
        let y = Tensor<Float>(zeros: [0])
        Dense.linearForward(x: x, weight: w, bias: nil, y: y)
        outputs.append(y.array)
      }
    }
    #expect(outputs.allSatisfy { $0 == outputs[0] })
  }

  @Test("thread slots: within the limit, and never two shards on one slot at the same time")
  func slots() {
    for (threads, limit) in [(1, 4), (2, 2), (3, 2), (3, 8), (4, 3)] {
      let shards = 64
      let busy = UnsafeMutablePointer<Int>.allocate(capacity: 8)
      busy.initialize(repeating: 0, count: 8)
      let seen = UnsafeMutablePointer<Int>.allocate(capacity: shards)
      seen.initialize(repeating: -1, count: shards)
      let overlaps = UnsafeMutablePointer<Int>.allocate(capacity: shards)
      overlaps.initialize(repeating: 0, count: shards)
      let box = UncheckedBox((busy, seen, overlaps))
      withExclusiveThreads(threads) {
        Parallel.forEach(shards, slots: limit) { s, slot in
          let (busy, seen, overlaps) = box.value
          seen[s] = slot
          busy[slot] += 1
          if busy[slot] != 1 { overlaps[s] = 1 }
          var x = 0.0
          for i in 0..<2000 { x += Double(i) }  // some work so shards overlap in time
          if x < 0 { print(x) }
          busy[slot] -= 1
        }
      }
      let maxSlot = min(threads, limit)
      #expect((0..<shards).allSatisfy { seen[$0] >= 0 && seen[$0] < maxSlot }, "threads \(threads)")
      #expect((0..<shards).allSatisfy { overlaps[$0] == 0 })
      busy.deallocate()
      seen.deallocate()
      overlaps.deallocate()
    }
  }

  @Test("a loop that finds the pool busy runs serially and counts for its own task, never for another")
  func fallbacksPerTask() {
    final class Holder: Sendable {
      let started = DispatchSemaphore(value: 0)
      let finish = DispatchSemaphore(value: 0)
      let done = DispatchSemaphore(value: 0)
      let fallbacks = Atomic<Int>(-1)
    }
    withExclusivePool {
      let h = Holder()
      // Another thread holds the pool: its job's shard 0 waits until told to finish.
      let thread = Thread {
        let counted = Parallel.countingFallbacks {
          Parallel.withThreads(2) {
            Parallel.forEach(2) { s in
              if s == 0 {
                h.started.signal()
                h.finish.wait()
              }
            }
          }
        }
        h.fallbacks.store(counted.fallbacks, ordering: .relaxed)
        h.done.signal()
      }
      thread.start()
      h.started.wait()
      let hits = Atomic<Int>(0)
      let mine = Parallel.countingFallbacks {
        Parallel.withThreads(2) { Parallel.forEach(4) { _ in hits.wrappingAdd(1, ordering: .relaxed) } }
      }
      h.finish.signal()
      h.done.wait()
      #expect(hits.load(ordering: .relaxed) == 4)
      #expect(mine.fallbacks == 1)
      #expect(h.fallbacks.load(ordering: .relaxed) == 0)
    }
  }
}
