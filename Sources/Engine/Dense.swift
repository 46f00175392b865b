/// Matrix product and fully-connected (linear) kernels.
///
/// Linear: `y[n, o] = sum_i x[n, i] * W[o, i] + b[o]` with `W` stored `[out, in]` (PyTorch).
/// Backward, given `dy = dL/dy`:
/// - `dx = dy * W`             (shards: rows of the batch)
/// - `dW = dy^T * x`           (shards: rows of `W`; each row sums over the whole batch)
/// - `db[o] = sum_n dy[n, o]`
/// No shard writes another's output, so the result is the same at any thread count.
public enum Dense {
  /// `C[m,n] = A[m,k] * B[k,n]` (optionally transposed operands) through BLAS.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
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

  /// `y = x W^T + b`; `x: [N, in]`, `weight: [out, in]`, `bias: [out]` or nil; `y` is resized.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func linearForward<T: Scalar>(
    x: Tensor<T>, weight: Tensor<T>, bias: Tensor<T>?, y: Tensor<T>
  ) {
    let n = x.shape[0]
    let inF = weight.shape[1]
    let outF = weight.shape[0]
    y.resize([n, outF])
    let shards = Parallel.batchShards(n)
    Parallel.forEach(shards) { s in
      let r = Parallel.range(s, of: shards, n)
      if r.isEmpty { return }
      let yp = y.data + r.lowerBound * outF
      if let bias {
        for i in 0..<r.count { (yp + i * outF).update(from: bias.data, count: outF) }
      }
      T.gemm(
        transA: false, transB: true, m: r.count, n: outF, k: inF, alpha: 1,
        a: x.data + r.lowerBound * inF, lda: inF, b: weight.data, ldb: inF,
        beta: bias == nil ? 0 : 1, c: yp, ldc: outF)
    }
  }

  /// Gradients of ``linearForward``: writes `dWeight`, `dBias` (if non-nil) and `dx` (if non-nil).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func linearBackward<T: Scalar>(
    x: Tensor<T>, weight: Tensor<T>, dy: Tensor<T>,
    dWeight: Tensor<T>, dBias: Tensor<T>?, dx: Tensor<T>?
  ) {
    let n = x.shape[0]
    let inF = weight.shape[1]
    let outF = weight.shape[0]
    if let dx {
      dx.resize(x.shape)
      let shards = Parallel.batchShards(n)
      Parallel.forEach(shards) { s in
        let r = Parallel.range(s, of: shards, n)
        if r.isEmpty { return }
        T.gemm(
          transA: false, transB: false, m: r.count, n: inF, k: outF, alpha: 1,
          a: dy.data + r.lowerBound * outF, lda: outF, b: weight.data, ldb: inF,
          beta: 0, c: dx.data + r.lowerBound * inF, ldc: inF)
      }
    }
    let rowShards = Parallel.batchShards(outF)
    Parallel.forEach(rowShards) { s in
      let r = Parallel.range(s, of: rowShards, outF)
      if r.isEmpty { return }
      T.gemm(
        transA: true, transB: false, m: r.count, n: inF, k: n, alpha: 1,
        a: dy.data + r.lowerBound, lda: outF, b: x.data, ldb: inF,
        beta: 0, c: dWeight.data + r.lowerBound * inF, ldc: inF)
      if let dBias {
        for o in r {
          var acc: T = 0
          for i in 0..<n { acc += dy.data[i * outF + o] }
          dBias.data[o] = acc
        }
      }
    }
  }
}
