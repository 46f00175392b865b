import Foundation

/// Counter-based random numbers addressed by `(seed, purpose, index)`.
///
/// Every consumer of randomness names its purpose (`"init"`, `"data-order"`, ...) and an
/// index (a parameter number, an epoch, an example). The stream for that address is a
/// pure function of the three, so results never depend on thread count, on how work is
/// split, or on what else drew random numbers before. The generator is SplitMix64 keyed by
/// a hash of the address (FNV-1a for the purpose string, then SplitMix finalisers).
public struct RandomStream: Sendable {
  private var state: UInt64

  /// The stream for `(seed, purpose, index)`.
  public init(seed: UInt64, purpose: String, index: UInt64 = 0) {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in purpose.utf8 {
      h ^= UInt64(b)
      h = h &* 0x0000_0100_0000_01b3
    }
    var s = RandomStream.mix(seed &+ 0x9e37_79b9_7f4a_7c15)
    s = RandomStream.mix(s ^ h)
    s = RandomStream.mix(s ^ (index &* 0xd1b5_4a32_d192_ed03))
    state = s
  }

  @inline(__always) static func mix(_ z0: UInt64) -> UInt64 {
    var z = z0
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }

  /// Next 64 random bits.
  @inline(__always) public mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    return RandomStream.mix(state)
  }

  /// Uniform in [0, 1) with 53 random bits.
  @inline(__always) public mutating func uniform() -> Double {
    Double(next() >> 11) * 0x1.0p-53
  }

  /// Uniform in [low, high).
  public mutating func uniform(_ low: Double, _ high: Double) -> Double {
    low + (high - low) * uniform()
  }

  /// Standard normal by the Box-Muller transform (one value per two uniforms).
  public mutating func normal() -> Double {
    let u1 = 1.0 - uniform()  // (0, 1]
    let u2 = uniform()
    return (-2.0 * _log(u1)).squareRoot() * _cos(2.0 * Double.pi * u2)
  }

  /// Uniform integer in 0..<n without modulo bias (Lemire's method).
  public mutating func int(below n: Int) -> Int {
    precondition(n > 0)
    let bound = UInt64(n)
    var m = next().multipliedFullWidth(by: bound)
    if m.low < bound {
      let t = (0 &- bound) % bound
      while m.low < t { m = next().multipliedFullWidth(by: bound) }
    }
    return Int(m.high)
  }

  /// A uniformly random permutation of 0..<n (Fisher-Yates).
  public mutating func permutation(_ n: Int) -> [Int] {
    var p = Array(0..<n)
    if n < 2 { return p }
    for i in stride(from: n - 1, to: 0, by: -1) {
      p.swapAt(i, int(below: i + 1))
    }
    return p
  }
}

@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
