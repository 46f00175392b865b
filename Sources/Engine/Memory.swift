import CIntrinsics

/// Cache hints: reads announced ahead of time so that memory latency overlaps other work.
/// They never change a result.
public enum Memory {
  /// Asks the CPU to start loading every cache line of `bytes` bytes from `start`.
  @inline(__always)
  public static func prefetch(_ start: UnsafeRawPointer, bytes: Int) {
    var offset = 0
    while offset < bytes {
      lk_prefetch(start + offset)
      offset += 64
    }
    if bytes > 0 { lk_prefetch(start + (bytes - 1)) }
  }
}
