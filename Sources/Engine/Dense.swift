/// Matrix product and fully-connected (linear) kernels.
///
/// Linear: `y[n, o] = sum_i x[n, i] * W[o, i] + b[o]` with `W` stored `[out, in]` (PyTorch).
/// Backward, given `dy = dL/dy`:
/// - `dx = dy * W`             (shards: columns of `dx`, i.e. input features)
/// - `dW = dy^T * x`           (shards: rows of `W`; each row sums over the whole batch)
/// Forward shards split the output features. Shards are cut along features so that each
/// BLAS call packs only its slice of `W`.
/// - `db[o] = sum_n dy[n, o]`
/// No shard writes another's output, so the result is the same at any thread count.
public enum Dense {
  /// `C[m,n] = A[m,k] * B[k,n]` (optionally transposed operands) through BLAS.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func matmul<T: Scalar>(
    _ a: Tensor<T>, _ b: Tensor<T>, transA: Bool = false, transB: Bool = false
  ) throws -> Tensor<T> {
    guard a.shape.count == 2, b.shape.count == 2 else {
      throw EngineError("matmul: expected two matrices, got shapes \(a.shape) and \(b.shape)")
    }
    let m = transA ? a.shape[1] : a.shape[0]
    let k = transA ? a.shape[0] : a.shape[1]
    let k2 = transB ? b.shape[1] : b.shape[0]
    let n = transB ? b.shape[0] : b.shape[1]
    guard k == k2 else {
      throw EngineError("matmul: inner dimensions differ (\(a.shape) x \(b.shape))")
    }
    let c = Tensor<T>(zeros: [m, n])
    if m > 0 && n > 0 && k > 0 {
      T.gemm(
        transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a.data, lda: a.shape[1],
        b: b.data, ldb: b.shape[1], beta: 0, c: c.data, ldc: n)
    }
    return c
  }

  /// Shards for a dense layer with `features` outputs (or inputs): fixed by the size only.
  @inline(__always) static func featureShards(_ features: Int) -> Int {
    max(1, min(Parallel.denseShards, features / 16))
  }

  /// `y = x W^T + b`; `x: [N, in]`, `weight: [out, in]`, `bias: [out]` or nil; `y` is resized.
  /// Shards split the output features, so each packs only its rows of `W`.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func linearForward<T: Scalar>(
    x: Tensor<T>, weight: Tensor<T>, bias: Tensor<T>?, y: Tensor<T>
  ) {
    // A feature-major `x` ([in, L], ``TensorLayout/featureMajor(batch:)``) is read as the
    // transposed operand: BLAS transposes for free.
    let fm = x.layout.featureMajorBatch
    let n = fm ?? x.shape[0]
    let inF = weight.shape[1]
    let outF = weight.shape[0]
    let lda = fm == nil ? inF : x.shape[1]
    y.resize([n, outF])
    let shards = featureShards(outF)
    Parallel.forEach(shards) { s in
      let r = Parallel.range(s, of: shards, outF)
      if r.isEmpty { return }
      let yp = y.data + r.lowerBound
      if let bias {
        for i in 0..<n { (yp + i * outF).update(from: bias.data + r.lowerBound, count: r.count) }
      }
      T.gemm(
        transA: fm != nil, transB: true, m: n, n: r.count, k: inF, alpha: 1,
        a: x.data, lda: lda, b: weight.data + r.lowerBound * inF, ldb: inF,
        beta: bias == nil ? 0 : 1, c: yp, ldc: outF)
    }
  }

  /// Gradients of ``linearForward``: writes `dWeight`, `dBias` (if non-nil) and `dx` (if non-nil).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func linearBackward<T: Scalar>(
    x: Tensor<T>, weight: Tensor<T>, dy: Tensor<T>,
    dWeight: Tensor<T>, dBias: Tensor<T>?, dx: Tensor<T>?
  ) {
    // A feature-major `x` gives a feature-major `dx` (`dX^T = W^T dY^T`, zero lanes past
    // the batch).
    let fm = x.layout.featureMajorBatch
    let n = fm ?? x.shape[0]
    let inF = weight.shape[1]
    let outF = weight.shape[0]
    if let dx {
      dx.resize(x.shape)
      if let fm { dx.layout = .featureMajor(batch: fm) }
      let shards = featureShards(inF)
      Parallel.forEach(shards) { s in
        let r = Parallel.range(s, of: shards, inF)
        if r.isEmpty { return }
        if fm != nil {
          let ld = x.shape[1]
          T.gemm(
            transA: true, transB: true, m: r.count, n: n, k: outF, alpha: 1,
            a: weight.data + r.lowerBound, lda: inF, b: dy.data, ldb: outF,
            beta: 0, c: dx.data + r.lowerBound * ld, ldc: ld)
          for i in r { (dx.data + i * ld + n).update(repeating: 0, count: ld - n) }
        } else {
          T.gemm(
            transA: false, transB: false, m: n, n: r.count, k: outF, alpha: 1,
            a: dy.data, lda: outF, b: weight.data + r.lowerBound, ldb: inF,
            beta: 0, c: dx.data + r.lowerBound, ldc: inF)
        }
      }
    }
    let rowShards = featureShards(outF)
    Parallel.forEach(rowShards) { s in
      let r = Parallel.range(s, of: rowShards, outF)
      if r.isEmpty { return }
      T.gemm(
        transA: true, transB: fm != nil, m: r.count, n: inF, k: n, alpha: 1,
        a: dy.data + r.lowerBound, lda: outF, b: x.data, ldb: fm == nil ? inF : x.shape[1],
        beta: 0, c: dWeight.data + r.lowerBound * inF, ldc: inF)
      if let dBias { columnSums(dy.data, rows: n, cols: outF, columns: r, into: dBias.data) }
    }
  }

  /// `out[c] = sum_i m[i, c]` for the columns `columns` of a row-major `[rows, cols]` matrix,
  /// each sum in row order from zero (the bias gradient: examples in order). Eight
  /// neighbouring columns share one vector of sums, so the eight chains of additions run
  /// side by side instead of one after another; each lane is the same chain, so the same
  /// bits as one column at a time.
  @inline(__always)
  public static func columnSums<T: Scalar>(
    _ m: UnsafePointer<T>, rows: Int, cols: Int, columns: Range<Int>, into out: UnsafeMutablePointer<T>
  ) {
    var c = columns.lowerBound
    while c + 8 <= columns.upperBound {
      var acc = SIMD8<T>()
      for i in 0..<rows { acc += UnsafeRawPointer(m + i * cols + c).loadUnaligned(as: SIMD8<T>.self) }
      UnsafeMutableRawPointer(out + c).storeBytes(of: acc, as: SIMD8<T>.self)
      c += 8
    }
    while c < columns.upperBound {
      var acc: T = 0
      for i in 0..<rows { acc += m[i * cols + c] }
      out[c] = acc
      c += 1
    }
  }
}
