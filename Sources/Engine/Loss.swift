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
    for i in 0..<n where labels[i] < 0 || Int(labels[i]) >= k {
      throw EngineError("cross-entropy: label \(labels[i]) outside 0..<\(k)")
    }
    dLogits?.resize(logits.shape)
    // Float: the exponentials of all rows in one vector pass (``expNonPositive(_:count:)``);
    // scalar `expf` calls were most of the loss's 2.8 us (LeNet, 60 rows of 10, one thread,
    // every training step). Double (scoring networks) keeps the libm exponential.
    let count = n * k
    return withUnsafeTemporaryAllocation(of: T.self, capacity: dLogits == nil ? count : 0) { scratch in
      let e = dLogits?.data ?? scratch.baseAddress!
      @inline(__always) func rowMax(_ z: UnsafeMutablePointer<T>) -> T {
        var mx = z[0]
        for j in 1..<k where z[j] > mx { mx = z[j] }
        return mx
      }
      for i in 0..<n {
        let z = logits.data + i * k
        let mx = rowMax(z)
        for j in 0..<k { e[i * k + j] = z[j] - mx }
      }
      if T.self == Float.self {
        expNonPositive(UnsafeMutableRawPointer(e).assumingMemoryBound(to: Float.self), count: count)
      } else {
        for i in 0..<count { e[i] = T.exp(e[i]) }
      }
      let invN = 1.0 / Double(n)
      var total = 0.0
      for i in 0..<n {
        let (z, row, t) = (logits.data + i * k, e + i * k, Int(labels[i]))
        var sum = 0.0
        for j in 0..<k { sum += Double(row[j]) }
        if dLogits != nil {
          let inv = 1.0 / (sum * Double(n))
          for j in 0..<k { row[j] = T(Double(row[j]) * inv) }
          row[t] -= T(invN)
        }
        total += Foundation.log(sum) + Double(rowMax(z)) - Double(z[t])
      }
      return total / Double(n)
    }
  }

  /// `x = exp(x)` for `count` values (the loss passes `x <= 0`: softmax after subtracting the
  /// row maximum), eight lanes at a time, by Cephes' single-precision method: `x = n ln 2 +
  /// r` with `n` the nearest integer to `x / ln 2` (ln 2 in two parts, so `r` is exact),
  /// `exp(r)` by a degree-7 polynomial on `|r| <= ln 2 / 2`, then times `2^n` (two exact
  /// power-of-two factors, so `n = 128` does not overflow early). Within 2 ulp of the
  /// correctly rounded value (tested against libm); 0 below -87.33 (where the result would
  /// be subnormal), infinity above 88.72, NaN for NaN. Every element gets the same
  /// arithmetic whatever its position (the tail runs in a padded vector).
  public static func expNonPositive(_ x: UnsafeMutablePointer<Float>, count: Int) {
    typealias V = SIMD8<Float>
    let lo: Float = -87.33654  // ln(FLT_MIN): below it the result would be subnormal
    let hi: Float = 88.72284  // ln(FLT_MAX)
    let magic = V(repeating: 12_582_912)  // 1.5 * 2^23: adding it rounds to an integer
    @inline(__always) func exp8(_ v: V) -> V {
      // NaN compares false and stays NaN.
      let a = v.replacing(with: lo, where: v .< lo).replacing(with: hi, where: v .> hi)
      let t = a * 1.44269504088896341 + magic
      let n = t - magic
      var r = a.addingProduct(-n, V(repeating: 0.693359375))
      r = r.addingProduct(-n, V(repeating: -2.12194440e-4))
      var p = V(repeating: 1.3981999507e-3).addingProduct(V(repeating: 1.9875691500e-4), r)
      p = V(repeating: 8.3334519073e-3).addingProduct(p, r)
      p = V(repeating: 4.1665795894e-2).addingProduct(p, r)
      p = V(repeating: 1.6666665459e-1).addingProduct(p, r)
      p = V(repeating: 5.0000001201e-1).addingProduct(p, r)
      let y = r.addingProduct(p, r * r) + 1
      // 2^n from the integer in `t`'s low mantissa bits, as 2^h * 2^(n - h) with h = n / 2:
      // both factors normal for n in -126...128, and scaling by them is exact.
      let bits = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
      let h = bits &>> 1
      let s1 = unsafeBitCast((h &+ 127) &<< 23, to: V.self)
      let s2 = unsafeBitCast((bits &- h &+ 127) &<< 23, to: V.self)
      return (y * s1 * s2).replacing(with: 0, where: v .< lo).replacing(with: .infinity, where: v .> hi)
    }
    var i = 0
    while i + 8 <= count {
      let v = UnsafeRawPointer(x + i).loadUnaligned(as: V.self)
      UnsafeMutableRawPointer(x + i).storeBytes(of: exp8(v), as: V.self)
      i += 8
    }
    guard i < count else { return }
    var tail = V()
    for j in i..<count { tail[j - i] = x[j] }
    tail = exp8(tail)
    for j in i..<count { x[j] = tail[j - i] }
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
