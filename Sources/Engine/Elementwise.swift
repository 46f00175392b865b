/// Element-wise kernels: ReLU, addition (residual connections) and their gradients.
///
/// `relu(x) = max(x, 0)`; its gradient passes `dy` where the *output* is positive
/// (so the subgradient at 0 is 0, as PyTorch). `add(a, b) = a + b` passes `dy` to both.
public enum Elementwise {
  /// Fixed chunking for element-wise work: one shard per 32K elements, at most 8.
  @inline(__always) static func shards(_ n: Int) -> Int { max(1, min(8, n / 32768)) }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func relu<T: Scalar>(x: Tensor<T>, y: Tensor<T>) {
    y.resize(x.shape)
    let n = x.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in
      let r = Parallel.range(s, of: sh, n)
      let xp = x.data
      let yp = y.data
      for i in r { yp[i] = xp[i] > 0 ? xp[i] : 0 }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func reluBackward<T: Scalar>(y: Tensor<T>, dy: Tensor<T>, dx: Tensor<T>) {
    dx.resize(y.shape)
    let n = y.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in
      let r = Parallel.range(s, of: sh, n)
      let yp = y.data
      let dyp = dy.data
      let dxp = dx.data
      for i in r { dxp[i] = yp[i] > 0 ? dyp[i] : 0 }
    }
  }

  /// `y = a + b` (same shapes).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func add<T: Scalar>(_ a: Tensor<T>, _ b: Tensor<T>, y: Tensor<T>) throws {
    guard a.shape == b.shape else {
      throw EngineError("add: shapes differ, \(a.shape) and \(b.shape)")
    }
    y.resize(a.shape)
    let n = a.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in
      let (ap, bp, yp) = (a.data, b.data, y.data)
      for i in Parallel.range(s, of: sh, n) { yp[i] = ap[i] + bp[i] }
    }
  }

  /// `y += x` in place.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func addInPlace<T: Scalar>(_ y: Tensor<T>, _ x: Tensor<T>) {
    precondition(x.count == y.count, "addInPlace: \(x.shape) vs \(y.shape)")
    let n = y.count
    let sh = shards(n)
    Parallel.forEach(sh) { s in
      let (xp, yp) = (x.data, y.data)
      for i in Parallel.range(s, of: sh, n) { yp[i] += xp[i] }
    }
  }
}
