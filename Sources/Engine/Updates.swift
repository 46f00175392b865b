/// Optimizer update kernels (the formulas are documented on `NN.SGD` and `NN.Adam`), and
/// mask multiplication. They live here so that they are compiled specialised for `Float`
/// and `Double`.
public enum Updates {
  /// `y *= mask` element-wise.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func multiply<T: Scalar>(_ y: Tensor<T>, by mask: Tensor<T>) {
    precondition(y.count == mask.count, "mask shape \(mask.shape) does not match \(y.shape)")
    let (yp, mp) = (y.data, mask.data)
    for i in 0..<y.count { yp[i] *= mp[i] }
  }

  /// One SGD step for one tensor; `buffer` is the momentum buffer (nil without momentum).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func sgd<T: Scalar>(
    weight: Tensor<T>, grad: Tensor<T>, buffer: Tensor<T>?, lr: T, weightDecay: T,
    momentum: T, dampening: T, nesterov: Bool, firstStep: Bool
  ) {
    let (w, g) = (weight.data, grad.data)
    let n = weight.count
    let chunks = elementChunks(n)
    Parallel.forEach(chunks) { c in
      let r = Parallel.range(c, of: chunks, n)
      guard let buffer else {
        for i in r { w[i] -= lr * (g[i] + weightDecay * w[i]) }
        return
      }
      let b = buffer.data
      let damp = 1 - dampening
      for i in r {
        let d = g[i] + weightDecay * w[i]
        let nb = firstStep ? d : momentum * b[i] + damp * d
        b[i] = nb
        w[i] -= lr * (nesterov ? d + momentum * nb : nb)
      }
    }
  }

  /// Fixed chunking of element-wise updates (each element is independent, so any split
  /// gives the same result): one chunk per 16K elements, at most 8.
  @inline(__always) static func elementChunks(_ n: Int) -> Int { max(1, min(8, n / 16384)) }

  /// One Adam step for one tensor (`stepSize = lr / (1 - b1^t)`, `bc2 = sqrt(1 - b2^t)`).
  public static func adam<T: Scalar>(
    weight: Tensor<T>, grad: Tensor<T>, m: Tensor<T>, v: Tensor<T>, stepSize: T, beta1: T,
    beta2: T, eps: T, weightDecay: T, sqrtBiasCorrection2: T
  ) {
    // Dispatch by hand to loops compiled for the concrete type (vectorised).
    let n = weight.count
    let chunks = elementChunks(n)
    Parallel.forEach(chunks) { c in
      let r = Parallel.range(c, of: chunks, n)
      adamChunk(weight, grad, m, v, r, stepSize, beta1, beta2, eps, weightDecay, sqrtBiasCorrection2)
    }
  }

  @inline(__always)
  static func adamChunk<T: Scalar>(
    _ weight: Tensor<T>, _ grad: Tensor<T>, _ m: Tensor<T>, _ v: Tensor<T>, _ r: Range<Int>, _ stepSize: T,
    _ beta1: T, _ beta2: T, _ eps: T, _ weightDecay: T, _ sqrtBiasCorrection2: T
  ) {
    if T.self == Float.self {
      adamLoop(
        UnsafeMutableRawPointer(weight.data).assumingMemoryBound(to: Float.self) + r.lowerBound,
        UnsafeMutableRawPointer(grad.data).assumingMemoryBound(to: Float.self) + r.lowerBound,
        UnsafeMutableRawPointer(m.data).assumingMemoryBound(to: Float.self) + r.lowerBound,
        UnsafeMutableRawPointer(v.data).assumingMemoryBound(to: Float.self) + r.lowerBound, r.count,
        Float(stepSize), Float(beta1), Float(beta2), Float(eps), Float(weightDecay),
        Float(sqrtBiasCorrection2))
    } else {
      adamLoop(
        UnsafeMutableRawPointer(weight.data).assumingMemoryBound(to: Double.self) + r.lowerBound,
        UnsafeMutableRawPointer(grad.data).assumingMemoryBound(to: Double.self) + r.lowerBound,
        UnsafeMutableRawPointer(m.data).assumingMemoryBound(to: Double.self) + r.lowerBound,
        UnsafeMutableRawPointer(v.data).assumingMemoryBound(to: Double.self) + r.lowerBound, r.count,
        Double(stepSize), Double(beta1), Double(beta2), Double(eps), Double(weightDecay),
        Double(sqrtBiasCorrection2))
    }
  }

  /// Adam over `n` elements, 8 lanes at a time (explicit SIMD: the scalar loop does not vectorise).
  @inline(__always)
  static func adamLoop<F: BinaryFloatingPoint & SIMDScalar>(
    _ w: UnsafeMutablePointer<F>, _ g: UnsafeMutablePointer<F>, _ mp: UnsafeMutablePointer<F>,
    _ vp: UnsafeMutablePointer<F>, _ n: Int, _ stepSize: F, _ beta1: F, _ beta2: F, _ eps: F,
    _ weightDecay: F, _ bc2: F
  ) {
    typealias V = SIMD8<F>
    var i = 0
    let (b1, b2, c1, c2) = (
      V(repeating: beta1), V(repeating: beta2), V(repeating: 1 - beta1), V(repeating: 1 - beta2)
    )
    let (wd, ss, bc, e) = (
      V(repeating: weightDecay), V(repeating: stepSize), V(repeating: bc2), V(repeating: eps)
    )
    while i + 8 <= n {
      let wv = UnsafeRawPointer(w + i).loadUnaligned(as: V.self)
      let d = UnsafeRawPointer(g + i).loadUnaligned(as: V.self) + wd * wv
      let m = b1 * UnsafeRawPointer(mp + i).loadUnaligned(as: V.self) + c1 * d
      let v = b2 * UnsafeRawPointer(vp + i).loadUnaligned(as: V.self) + c2 * d * d
      UnsafeMutableRawPointer(mp + i).storeBytes(of: m, as: V.self)
      UnsafeMutableRawPointer(vp + i).storeBytes(of: v, as: V.self)
      UnsafeMutableRawPointer(w + i).storeBytes(of: wv - ss * m / (v.squareRoot() / bc + e), as: V.self)
      i += 8
    }
    while i < n {
      let d = g[i] + weightDecay * w[i]
      let m = beta1 * mp[i] + (1 - beta1) * d
      let v = beta2 * vp[i] + (1 - beta2) * d * d
      mp[i] = m
      vp[i] = v
      w[i] -= stepSize * m / (v.squareRoot() / bc2 + eps)
      i += 1
    }
  }
}
