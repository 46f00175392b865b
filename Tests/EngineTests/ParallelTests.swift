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
}
