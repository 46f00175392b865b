import Foundation

/// Softmax cross-entropy and accuracy.
///
/// For logits `z[n, k]` and labels `t[n]`:
/// `L = (1/N) * sum_n (logsumexp(z[n]) - z[n, t[n]])`, computed stably by subtracting the
/// row maximum. Its gradient is `dL/dz[n, k] = (softmax(z[n])[k] - [k == t[n]]) / N`.
public enum CrossEntropy {
  /// Returns the mean loss and writes `dLogits` (resized) when non-nil.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func loss<T: Scalar>(
    logits: Tensor<T>, labels: [Int32], dLogits: Tensor<T>?
  ) throws -> Double {
    guard logits.shape.count == 2 else {
      throw EngineError("cross-entropy: expected logits [N, classes], got shape \(logits.shape)")
    }
    let (n, k) = (logits.shape[0], logits.shape[1])
    guard labels.count == n else {
      throw EngineError("cross-entropy: \(n) logits rows but \(labels.count) labels")
    }
    dLogits?.resize(logits.shape)
    var total = 0.0
    for i in 0..<n {
      let z = logits.data + i * k
      let t = Int(labels[i])
      guard t >= 0 && t < k else {
        throw EngineError("cross-entropy: label \(t) outside 0..<\(k)")
      }
      var mx = z[0]
      for j in 1..<k where z[j] > mx { mx = z[j] }
      // Each exponential once (kept in dLogits, or in a stack buffer without it): half
      // the calls, the same values.
      var sum = 0.0
      withUnsafeTemporaryAllocation(of: T.self, capacity: dLogits == nil ? k : 0) { scratch in
        let e = dLogits.map { $0.data + i * k } ?? scratch.baseAddress!
        for j in 0..<k {
          e[j] = T.exp(z[j] - mx)
          sum += Double(e[j])
        }
        if dLogits != nil {
          let inv = 1.0 / (sum * Double(n))
          for j in 0..<k { e[j] = T(Double(e[j]) * inv) }
          e[t] -= T(1.0 / Double(n))
        }
      }
      total += Foundation.log(sum) + Double(mx) - Double(z[t])
    }
    return total / Double(n)
  }

  /// Number of rows whose arg-max (first on ties) equals the label.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func correctCount<T: Scalar>(logits: Tensor<T>, labels: [Int32]) -> Int {
    let (n, k) = (logits.shape[0], logits.shape[1])
    var correct = 0
    for i in 0..<n {
      let z = logits.data + i * k
      var best = 0
      for j in 1..<k where z[j] > z[best] { best = j }
      if best == Int(labels[i]) { correct += 1 }
    }
    return correct
  }
}
