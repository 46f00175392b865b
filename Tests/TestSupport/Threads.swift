import Engine
import Foundation
import Testing

/// One lock for every test that needs a particular thread count: such tests never overlap,
/// so each gets the worker pool to itself, while the rest of the suite (thread count 1,
/// never touching the pool) runs concurrently. The count is task-local
/// (``Engine/Parallel/withThreads(_:_:)``): no other test sees it.
private let exclusiveThreads = NSLock()

/// Runs `body` while no other test that sets a thread count runs.
public func withExclusivePool<R>(_ body: () throws -> R) rethrows -> R {
  exclusiveThreads.lock()
  defer { exclusiveThreads.unlock() }
  return try body()
}

/// Runs `body` with `threads` threads and checks that every parallel loop in it really
/// ran on the pool (none fell back to serial because the pool was busy).
public func withExclusiveThreads<R>(
  _ threads: Int, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) rethrows -> R {
  let (r, fallbacks) = try withExclusivePool {
    try Parallel.countingFallbacks { try Parallel.withThreads(threads, body) }
  }
  #expect(
    fallbacks == 0, "\(fallbacks) parallel loops ran serially at \(threads) threads",
    sourceLocation: sourceLocation)
  return r
}
