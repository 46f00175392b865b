#if arch(x86_64)
  import _Builtin_intrinsics.intel
#endif

/// Element-wise kernels: ReLU, addition (residual connections) and their gradients.
///
/// `relu(x) = max(x, 0)`; its gradient passes `dy` where the *output* is positive
/// (so the subgradient at 0 is 0, as PyTorch). Both are computed as a product with a 0/1
/// mask, so a negative input gives -0 (equal to 0 in every later computation). `add(a, b) = a + b` passes `dy` to both.
public enum Elementwise {
  /// Fixed chunking for element-wise work: one shard per 32K elements, at most 8.
  @inline(__always) static func shards(_ n: Int) -> Int { max(1, min(8, n / 32768)) }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func relu<T: Scalar>(x: Tensor<T>, y: Tensor<T>) {
    let layout = x.layout  // read before `resize`, which resets it (`y` may be `x`)
    y.resize(x.shape)
    y.layout = layout
    let n = x.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in
      let r = Parallel.range(s, of: sh, n)
      reluElements(x.data + r.lowerBound, into: y.data + r.lowerBound, count: r.count)
    }
  }

  /// `y[i] = x[i] * (x[i] > 0 ? 1 : 0)` for `i < count` (`y` may be `x`): the one ReLU
  /// formula, also used by kernels that apply a fused ReLU, so fused and separate give the
  /// same bits. A multiply by a 0/1 mask so that it vectorises (a select compiles to a
  /// data-dependent branch, which mispredicts on activations).
  @inline(__always)
  static func reluElements<T: Scalar>(_ x: UnsafePointer<T>, into y: UnsafeMutablePointer<T>, count: Int) {
    for i in 0..<count {
      let m: T = x[i] > 0 ? 1 : 0
      y[i] = x[i] * m
    }
  }

  /// `dx[i] = dy[i] * (y[i] > 0 ? 1 : 0)` for `i < count`: ReLU's backward formula, shared
  /// with kernels that apply a fused ReLU (see ``reluElements(_:into:count:)``).
  @inline(__always)
  static func reluMaskElements<T: Scalar>(
    y: UnsafePointer<T>, dy: UnsafePointer<T>, into dx: UnsafeMutablePointer<T>, count: Int
  ) {
    for i in 0..<count {
      let m: T = y[i] > 0 ? 1 : 0
      dx[i] = dy[i] * m
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func reluBackward<T: Scalar>(y: Tensor<T>, dy: Tensor<T>, dx: Tensor<T>) {
    let layout = dy.layout  // read before `resize`, which resets it (`dx` may be `dy`)
    dx.resize(y.shape)
    dx.layout = layout
    let n = y.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in
      let r = Parallel.range(s, of: sh, n)
      let o = r.lowerBound
      reluMaskElements(y: y.data + o, dy: dy.data + o, into: dx.data + o, count: r.count)
    }
  }

  /// `y[i] = Float(x[i]) * scale + shift` for 8-bit pixels, rounded twice (a multiply, then
  /// an add; no fused multiply-add) whether it runs 8 lanes at a time or one. Swift's generic
  /// SIMD integer-to-float conversion is a scalar loop, hence the intrinsics.
  public static func affine(
    bytes x: UnsafePointer<UInt8>, count: Int, scale: Float, shift: Float, into y: UnsafeMutablePointer<Float>
  ) {
    var j = 0
    #if arch(x86_64)
      let (vs, vh) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift))
      while j + 8 <= count {
        let b = _mm_cvtsi64_si128(Int64(bitPattern: UnsafeRawPointer(x + j).loadUnaligned(as: UInt64.self)))
        let f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b))
        UnsafeMutableRawPointer(y + j).storeBytes(
          of: SIMD8<Float>(_mm256_add_ps(_mm256_mul_ps(f, vs), vh)), as: SIMD8<Float>.self)
        j += 8
      }
    #endif
    while j < count {
      y[j] = Float(x[j]) * scale + shift
      j += 1
    }
  }

  /// `y = a + b` (same shapes).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func add<T: Scalar>(_ a: Tensor<T>, _ b: Tensor<T>, y: Tensor<T>) throws {
    guard a.shape == b.shape, a.layout == b.layout else {
      throw EngineError("add: shapes or layouts differ, \(a.shape) \(a.layout) and \(b.shape) \(b.layout)")
    }
    let layout = a.layout  // read before `resize`, which resets it (`y` may be `a`)
    y.resize(a.shape)
    y.layout = layout
    let n = a.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in addElements(a.data, b.data, into: y.data, Parallel.range(s, of: sh, n)) }
  }

  /// `y += x` in place.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func addInPlace<T: Scalar>(_ y: Tensor<T>, _ x: Tensor<T>) {
    precondition(x.count == y.count && x.layout == y.layout, "addInPlace: \(x.shape) vs \(y.shape)")
    let n = y.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in addElements(y.data, x.data, into: y.data, Parallel.range(s, of: sh, n)) }
  }
}

/// `y[i] = a[i] + b[i]` for `i` in `r`, 8 lanes at a time (`y` may be `a`).
@inline(__always) func addElements<T: Scalar>(
  _ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>, into y: UnsafeMutablePointer<T>, _ r: Range<Int>
) {
  var i = r.lowerBound
  while i + 8 <= r.upperBound {
    store8(load8(a + i) + load8(b + i), y + i)
    i += 8
  }
  while i < r.upperBound {
    y[i] = a[i] + b[i]
    i += 1
  }
}

/// Eight lanes from `p` (unaligned).
@inline(__always) func load8<T: Scalar>(_ p: UnsafePointer<T>) -> SIMD8<T> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD8<T>.self)
}
@inline(__always) func load8<T: Scalar>(_ p: UnsafeMutablePointer<T>) -> SIMD8<T> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD8<T>.self)
}
/// Stores eight lanes at `p` (unaligned).
@inline(__always) func store8<T: Scalar>(_ v: SIMD8<T>, _ p: UnsafeMutablePointer<T>) {
  UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<T>.self)
}
