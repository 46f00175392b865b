#if arch(x86_64)
  import _Builtin_intrinsics.intel
#endif

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
    multiply(y, mask, 0..<y.count)
  }

  /// Work items for one update of tensors of `counts` elements: (tensor, element range)
  /// chunks of at most 16K elements, so one parallel loop covers every tensor, small ones
  /// included. Elements are independent, so the split never changes results.
  /// For a target with ``UpdateTarget/positions``, the count is that of the positions.
  public static func chunks(counts: [Int]) -> [(Int, Range<Int>)] {
    var out: [(Int, Range<Int>)] = []
    for (k, n) in counts.enumerated() {
      for i in stride(from: 0, to: n, by: 16384) { out.append((k, i..<min(n, i + 16384))) }
    }
    return out
  }

  /// Runs `update` on elements `r` of `t` under the mask contract: the gradient is masked
  /// first, the weight and every state tensor after.
  @inline(__always)
  static func masked<T: Scalar>(_ t: UpdateTarget<T>, _ r: Range<Int>, _ update: () -> Void) {
    guard let mask = t.mask else { return update() }
    multiply(t.grad, mask, r)
    update()
    multiply(t.weight, mask, r)
    for s in t.state { multiply(s, mask, r) }
  }

  /// ``chunks(counts:)`` for a list of targets, recomputed only when their counts change
  /// (a layer switching to sparse kernels changes its target's count).
  public final class ChunkCache: @unchecked Sendable {
    private var counts: [Int] = []
    private var cached: [(Int, Range<Int>)] = []
    public init() {}
    public func chunks<T: Scalar>(_ targets: [UpdateTarget<T>]) -> [(Int, Range<Int>)] {
      // Compared in place: this runs every step (a key-path map here cost 3.7 us per step).
      var same = targets.count == counts.count
      for k in targets.indices where same { same = targets[k].count == counts[k] }
      if !same {
        let c = targets.map { $0.count }
        counts = c
        cached = []
        // Compact targets gather and scatter: smaller chunks keep every thread busy.
        for (k, t) in targets.enumerated() {
          let size = t.positions == nil ? 16384 : 4096
          for i in stride(from: 0, to: c[k], by: size) { cached.append((k, i..<min(c[k], i + size))) }
        }
      }
      return cached
    }
  }

  /// `t[r] *= mask[r]`.
  @inline(__always)
  static func multiply<T: Scalar>(_ t: Tensor<T>, _ mask: Tensor<T>, _ r: Range<Int>) {
    let (p, m) = (t.data, mask.data)
    for i in r { p[i] *= m[i] }
  }

  /// One SGD step for all targets (state: the momentum buffer, or empty without momentum).
  /// Masks: the gradient is masked first, the weight and buffer after the update.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func sgd<T: Scalar>(
    _ targets: [UpdateTarget<T>], chunks: [(Int, Range<Int>)], lr: T, weightDecay: T,
    momentum: T, dampening: T, nesterov: Bool, firstStep: Bool
  ) {
    Parallel.forEach(chunks.count) { c in
      let (k, r) = chunks[c]
      let t = targets[k]
      let (w, g) = (t.weight.data, t.grad.data)
      t.gather(r)
      defer { t.scatter(r) }
      masked(t, r) {
        if let buffer = t.state.first {
          let b = buffer.data
          let damp = 1 - dampening
          for i in r {
            let d = g[i] + weightDecay * w[i]
            let nb = firstStep ? d : momentum * b[i] + damp * d
            b[i] = nb
            w[i] -= lr * (nesterov ? d + momentum * nb : nb)
          }
        } else {
          for i in r { w[i] -= lr * (g[i] + weightDecay * w[i]) }
        }
      }
    }
  }

  /// One Adam step for all targets (state: `m`, `v`; `stepSize = lr / (1 - b1^t)`,
  /// `bc2 = sqrt(1 - b2^t)`). Masks as for ``sgd(_:chunks:lr:weightDecay:momentum:dampening:nesterov:firstStep:)``.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func adam<T: Scalar>(
    _ targets: [UpdateTarget<T>], chunks: [(Int, Range<Int>)], stepSize: T, beta1: T,
    beta2: T, eps: T, weightDecay: T, sqrtBiasCorrection2: T
  ) {
    Parallel.forEach(chunks.count) { c in
      let (k, r) = chunks[c]
      let t = targets[k]
      t.gather(r)
      defer { t.scatter(r) }
      // The mask contract fused into the update loop (same operations, one pass).
      adamChunk(
        t.weight, t.grad, t.state[0], t.state[1], r, stepSize, beta1, beta2, eps, weightDecay,
        sqrtBiasCorrection2, mask: t.mask)
    }
  }

  @inline(__always)
  static func adamChunk<T: Scalar>(
    _ weight: Tensor<T>, _ grad: Tensor<T>, _ m: Tensor<T>, _ v: Tensor<T>, _ r: Range<Int>, _ stepSize: T,
    _ beta1: T, _ beta2: T, _ eps: T, _ weightDecay: T, _ sqrtBiasCorrection2: T, mask: Tensor<T>? = nil
  ) {
    func ptr<F>(_ t: Tensor<T>?, _: F.Type) -> UnsafeMutablePointer<F>? {
      t.map { UnsafeMutableRawPointer($0.data).assumingMemoryBound(to: F.self) + r.lowerBound }
    }
    if T.self == Float.self {
      adamLoop(
        UnsafeMutableRawPointer(weight.data).assumingMemoryBound(to: Float.self) + r.lowerBound,
        UnsafeMutableRawPointer(grad.data).assumingMemoryBound(to: Float.self) + r.lowerBound,
        UnsafeMutableRawPointer(m.data).assumingMemoryBound(to: Float.self) + r.lowerBound,
        UnsafeMutableRawPointer(v.data).assumingMemoryBound(to: Float.self) + r.lowerBound, r.count,
        Float(stepSize), Float(beta1), Float(beta2), Float(eps), Float(weightDecay),
        Float(sqrtBiasCorrection2), mask: ptr(mask, Float.self), sqrt: sqrt8)
    } else {
      adamLoop(
        UnsafeMutableRawPointer(weight.data).assumingMemoryBound(to: Double.self) + r.lowerBound,
        UnsafeMutableRawPointer(grad.data).assumingMemoryBound(to: Double.self) + r.lowerBound,
        UnsafeMutableRawPointer(m.data).assumingMemoryBound(to: Double.self) + r.lowerBound,
        UnsafeMutableRawPointer(v.data).assumingMemoryBound(to: Double.self) + r.lowerBound, r.count,
        Double(stepSize), Double(beta1), Double(beta2), Double(eps), Double(weightDecay),
        Double(sqrtBiasCorrection2), mask: ptr(mask, Double.self), sqrt: sqrt8)
    }
  }

  /// Adam over `n` elements, 8 lanes at a time (explicit SIMD: the scalar loop does not
  /// vectorise, and neither does a generic `SIMD8.squareRoot()`, hence ``sqrt8(_:)``).
  @inline(__always)
  static func adamLoop<F: BinaryFloatingPoint & SIMDScalar>(
    _ w: UnsafeMutablePointer<F>, _ g: UnsafeMutablePointer<F>, _ mp: UnsafeMutablePointer<F>,
    _ vp: UnsafeMutablePointer<F>, _ n: Int, _ stepSize: F, _ beta1: F, _ beta2: F, _ eps: F,
    _ weightDecay: F, _ bc2: F, mask: UnsafeMutablePointer<F>? = nil, sqrt: (SIMD8<F>) -> SIMD8<F>
  ) {
    // With a mask: the gradient is multiplied by it first (and stored), the weight and both
    // moments after the update: the mask contract, in the same pass.
    typealias V = SIMD8<F>
    var i = 0
    let (b1, b2, c1, c2) = (
      V(repeating: beta1), V(repeating: beta2), V(repeating: 1 - beta1), V(repeating: 1 - beta2)
    )
    let (wd, ss, bc, e) = (
      V(repeating: weightDecay), V(repeating: stepSize), V(repeating: bc2), V(repeating: eps)
    )
    if let mask {
      while i + 8 <= n {
        let mk = UnsafeRawPointer(mask + i).loadUnaligned(as: V.self)
        let gv = UnsafeRawPointer(g + i).loadUnaligned(as: V.self) * mk
        UnsafeMutableRawPointer(g + i).storeBytes(of: gv, as: V.self)
        let wv = UnsafeRawPointer(w + i).loadUnaligned(as: V.self)
        let d = gv + wd * wv
        let m = b1 * UnsafeRawPointer(mp + i).loadUnaligned(as: V.self) + c1 * d
        let v = b2 * UnsafeRawPointer(vp + i).loadUnaligned(as: V.self) + c2 * d * d
        UnsafeMutableRawPointer(mp + i).storeBytes(of: m * mk, as: V.self)
        UnsafeMutableRawPointer(vp + i).storeBytes(of: v * mk, as: V.self)
        UnsafeMutableRawPointer(w + i).storeBytes(of: (wv - ss * m / (sqrt(v) / bc + e)) * mk, as: V.self)
        i += 8
      }
      while i < n {
        g[i] *= mask[i]
        let d = g[i] + weightDecay * w[i]
        let m = beta1 * mp[i] + (1 - beta1) * d
        let v = beta2 * vp[i] + (1 - beta2) * d * d
        mp[i] = m * mask[i]
        vp[i] = v * mask[i]
        w[i] = (w[i] - stepSize * m / (v.squareRoot() / bc2 + eps)) * mask[i]
        i += 1
      }
      return
    }
    while i + 8 <= n {
      let wv = UnsafeRawPointer(w + i).loadUnaligned(as: V.self)
      let d = UnsafeRawPointer(g + i).loadUnaligned(as: V.self) + wd * wv
      let m = b1 * UnsafeRawPointer(mp + i).loadUnaligned(as: V.self) + c1 * d
      let v = b2 * UnsafeRawPointer(vp + i).loadUnaligned(as: V.self) + c2 * d * d
      UnsafeMutableRawPointer(mp + i).storeBytes(of: m, as: V.self)
      UnsafeMutableRawPointer(vp + i).storeBytes(of: v, as: V.self)
      UnsafeMutableRawPointer(w + i).storeBytes(of: wv - ss * m / (sqrt(v) / bc + e), as: V.self)
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

/// Lane-wise square root, correctly rounded (IEEE), as packed instructions.
@inline(__always) func sqrt8(_ v: SIMD8<Float>) -> SIMD8<Float> {
  #if arch(x86_64)
    SIMD8(lowHalf: _mm_sqrt_ps(v.lowHalf), highHalf: _mm_sqrt_ps(v.highHalf))
  #else
    v.squareRoot()
  #endif
}
@inline(__always) func sqrt8(_ v: SIMD8<Double>) -> SIMD8<Double> {
  #if arch(x86_64)
    let (a, b) = (v.lowHalf, v.highHalf)
    return SIMD8(
      lowHalf: SIMD4(lowHalf: _mm_sqrt_pd(a.lowHalf), highHalf: _mm_sqrt_pd(a.highHalf)),
      highHalf: SIMD4(lowHalf: _mm_sqrt_pd(b.lowHalf), highHalf: _mm_sqrt_pd(b.highHalf)))
  #else
    v.squareRoot()
  #endif
}

/// One parameter tensor for the update kernels: value, gradient, optional mask, and the
/// optimizer's state tensors (SGD: momentum buffer or none; Adam: `m`, `v`).
///
/// Compact form (a pruned layer on sparse kernels): `weight`, `grad` and `state` hold the
/// surviving entries only, in the order of `positions` in `denseWeight`. Each chunk gathers
/// its weights (and, without a compact gradient from the layer, its gradients from
/// `denseGrad`), runs the same update on the compact entries, and scatters the weights
/// back. Pruned entries are never touched: they are zero, as the mask contract keeps them.
public struct UpdateTarget<T: Scalar>: @unchecked Sendable {
  public let weight: Tensor<T>
  public let grad: Tensor<T>
  public let mask: Tensor<T>?
  public let state: [Tensor<T>]
  public let positions: UnsafeBufferPointer<Int>?
  public let denseWeight: Tensor<T>?
  public let denseGrad: Tensor<T>?
  public init(weight: Tensor<T>, grad: Tensor<T>, mask: Tensor<T>?, state: [Tensor<T>]) {
    (self.weight, self.grad, self.mask, self.state) = (weight, grad, mask, state)
    (positions, denseWeight, denseGrad) = (nil, nil, nil)
  }
  /// A compact target (see the type's comment); `denseGrad` nil when `grad` already holds
  /// the compact gradient; `denseWeight` nil when `compactWeight` is the weight itself (no
  /// gather or scatter).
  public init(
    compactWeight: Tensor<T>, grad: Tensor<T>, state: [Tensor<T>], positions: UnsafeBufferPointer<Int>,
    denseWeight: Tensor<T>?, denseGrad: Tensor<T>?
  ) {
    (weight, self.grad, mask, self.state) = (compactWeight, grad, nil, state)
    (self.positions, self.denseWeight, self.denseGrad) = (positions, denseWeight, denseGrad)
  }
  /// Elements one update touches.
  public var count: Int { weight.count }

  /// Compact form: loads entries `r` from the dense tensors.
  @inline(__always) func gather(_ r: Range<Int>) {
    guard let positions, let dw = denseWeight?.data else { return }
    let w = weight.data
    for j in r { w[j] = dw[positions[j]] }
    if let dg = denseGrad?.data {
      let g = grad.data
      for j in r { g[j] = dg[positions[j]] }
    }
  }
  /// Compact form: stores weights `r` back into the dense weight.
  @inline(__always) func scatter(_ r: Range<Int>) {
    guard let positions, let dw = denseWeight?.data else { return }
    let w = weight.data
    for j in r { dw[positions[j]] = w[j] }
  }
}
