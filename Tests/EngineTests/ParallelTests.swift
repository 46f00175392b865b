import Dispatch
import Engine
import Testing

@Suite("Worker pool", .serialized)
struct ParallelTests {
  @Test("every shard runs exactly once, also when several threads use the pool at once")
  func concurrentCallers() {
    Parallel.threads = 2
    defer { Parallel.threads = 1 }
    let callers = 4
    let shards = 37
    let counts = UnsafeMutablePointer<Int>.allocate(capacity: callers * shards)
    counts.initialize(repeating: 0, count: callers * shards)
    defer { counts.deallocate() }
    let box = UncheckedBox(counts)
    for _ in 0..<200 {
      DispatchQueue.concurrentPerform(iterations: callers) { c in
        Parallel.forEach(shards) { s in box.value[c * shards + s] += 1 }
      }
    }
    #expect((0..<(callers * shards)).allSatisfy { counts[$0] == 200 })
  }

  @Test("changing the thread count between jobs neither hangs nor changes results")
  func changingThreads() throws {
    let x = Tensor<Float>((0..<(64 * 50)).map { Float($0 % 13) - 6 }, shape: [64, 50])
    let w = Tensor<Float>((0..<(40 * 50)).map { Float($0 % 7) - 3 }, shape: [40, 50])
    var outputs: [[Float]] = []
    for t in [1, 2, 3, 2, 1, 4] {
      Parallel.threads = t
      let y = Tensor<Float>(zeros: [0])
      Dense.linearForward(x: x, weight: w, bias: nil, y: y)
      outputs.append(y.array)
    }
    Parallel.threads = 1
    #expect(outputs.allSatisfy { $0 == outputs[0] })
  }

  @Test("thread slots: within the limit, and never two shards on one slot at the same time")
  func slots() {
    for (threads, limit) in [(1, 4), (2, 2), (3, 2), (3, 8), (4, 3)] {
      Parallel.threads = threads
      let shards = 64
      let busy = UnsafeMutablePointer<Int>.allocate(capacity: 8)
      busy.initialize(repeating: 0, count: 8)
      let seen = UnsafeMutablePointer<Int>.allocate(capacity: shards)
      seen.initialize(repeating: -1, count: shards)
      let overlaps = UnsafeMutablePointer<Int>.allocate(capacity: shards)
      overlaps.initialize(repeating: 0, count: shards)
      let box = UncheckedBox((busy, seen, overlaps))
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
      let maxSlot = min(threads, limit)
      #expect((0..<shards).allSatisfy { seen[$0] >= 0 && seen[$0] < maxSlot }, "threads \(threads)")
      #expect((0..<shards).allSatisfy { overlaps[$0] == 0 })
      busy.deallocate()
      seen.deallocate()
      overlaps.deallocate()
    }
    Parallel.threads = 1
  }
}
