/// Batch normalisation over the channels of an NCHW tensor (PyTorch's `BatchNorm2d`).
///
/// Training mode, per channel `c` over the `M = N*H*W` values:
/// `mu = mean(x)`, `var = mean((x - mu)^2)` (biased), `xhat = (x - mu) / sqrt(var + eps)`,
/// `y = gamma * xhat + beta`; running statistics with PyTorch's momentum convention:
/// `running_mean = (1 - m) * running_mean + m * mu`,
/// `running_var = (1 - m) * running_var + m * var * M / (M - 1)` (unbiased).
/// Evaluation mode uses the running statistics in place of `mu`, `var`.
/// Backward (training): `dbeta = sum dy`, `dgamma = sum dy * xhat`,
/// `dx = gamma / sqrt(var + eps) / M * (M * dy - dbeta - xhat * dgamma)`;
/// (evaluation): `dx = gamma / sqrt(running_var + eps) * dy`.
/// Each channel is independent, so shards (groups of channels) never interact.
public enum BatchNormKernel {
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func forward<T: Scalar>(
    x: Tensor<T>, gamma: Tensor<T>, beta: Tensor<T>, runningMean: Tensor<T>,
    runningVar: Tensor<T>, training: Bool, momentum: T, eps: T, y: Tensor<T>,
    savedMean: Tensor<T>, savedInvStd: Tensor<T>
  ) throws {
    guard x.shape.count == 4 || x.shape.count == 2 else {
      throw EngineError("batch norm: expected NCHW or NC input, got shape \(x.shape)")
    }
    let (n, c) = (x.shape[0], x.shape[1])
    guard c == gamma.count else {
      throw EngineError("batch norm: expected \(gamma.count) channels, got shape \(x.shape)")
    }
    let hw = x.shape.count == 4 ? x.shape[2] * x.shape[3] : 1
    let m = n * hw
    if training && m < 2 {
      throw EngineError("batch norm: training needs more than one value per channel, got shape \(x.shape)")
    }
    y.resize(x.shape)
    savedMean.resize([c])
    savedInvStd.resize([c])
    let shards = Parallel.batchShards(c)
    Parallel.forEach(shards) { s in
      for ch in Parallel.range(s, of: shards, c) {
        var mean: T
        var variance: T
        if training {
          var sum = 0.0
          for i in 0..<n { sum += Double(Reduce.sum(x.data + (i * c + ch) * hw, hw)) }
          mean = T(sum / Double(m))
          var sq = 0.0
          for i in 0..<n { sq += Double(Reduce.sumSquaredDeviation(x.data + (i * c + ch) * hw, hw, mean)) }
          variance = T(sq / Double(m))
          runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * mean
          runningVar.data[ch] =
            (1 - momentum) * runningVar.data[ch] + momentum * T(sq / Double(m - 1))
        } else {
          mean = runningMean.data[ch]
          variance = runningVar.data[ch]
        }
        let invStd = 1 / (variance + eps).squareRoot()
        savedMean.data[ch] = mean
        savedInvStd.data[ch] = invStd
        let scale = gamma.data[ch] * invStd
        let shift = beta.data[ch] - mean * scale
        for i in 0..<n {
          let p = x.data + (i * c + ch) * hw
          let q = y.data + (i * c + ch) * hw
          for j in 0..<hw { q[j] = p[j] * scale + shift }
        }
      }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func backward<T: Scalar>(
    x: Tensor<T>, gamma: Tensor<T>, dy: Tensor<T>, savedMean: Tensor<T>, savedInvStd: Tensor<T>,
    training: Bool, dGamma: Tensor<T>, dBeta: Tensor<T>, dx: Tensor<T>?
  ) {
    let (n, c) = (x.shape[0], x.shape[1])
    let hw = x.shape.count == 4 ? x.shape[2] * x.shape[3] : 1
    let m = T(n * hw)
    dx?.resize(x.shape)
    let shards = Parallel.batchShards(c)
    Parallel.forEach(shards) { s in
      for ch in Parallel.range(s, of: shards, c) {
        let mean = savedMean.data[ch]
        let invStd = savedInvStd.data[ch]
        var sdy = 0.0
        var sdyx = 0.0
        for i in 0..<n {
          let (a, b) = Reduce.sumAndCenteredDot(
            dy.data + (i * c + ch) * hw, x.data + (i * c + ch) * hw, hw, mean)
          sdy += Double(a)
          sdyx += Double(b)
        }
        let dbeta = T(sdy)
        let dgamma = T(sdyx) * invStd
        dBeta.data[ch] = dbeta
        dGamma.data[ch] = dgamma
        guard let dx else { continue }
        let g = gamma.data[ch] * invStd
        for i in 0..<n {
          let p = x.data + (i * c + ch) * hw
          let d = dy.data + (i * c + ch) * hw
          let q = dx.data + (i * c + ch) * hw
          if training {
            let k1 = g / m
            for j in 0..<hw {
              let xhat = (p[j] - mean) * invStd
              q[j] = k1 * (m * d[j] - dbeta - xhat * dgamma)
            }
          } else {
            for j in 0..<hw { q[j] = g * d[j] }
          }
        }
      }
    }
  }
}

/// Reductions with eight partial sums (lanes), combined in a fixed order: vectorised, and the
/// same result on every run and thread count.
enum Reduce {
  /// `sum_j p[j]`.
  @inline(__always) static func sum<T: Scalar>(_ p: UnsafeMutablePointer<T>, _ n: Int) -> T {
    var acc = SIMD8<T>()
    var j = 0
    while j + 8 <= n {
      acc += load8(p + j)
      j += 8
    }
    var s = acc.sum()
    while j < n {
      s += p[j]
      j += 1
    }
    return s
  }

  /// `sum_j (p[j] - mean)^2`.
  @inline(__always) static func sumSquaredDeviation<T: Scalar>(
    _ p: UnsafeMutablePointer<T>, _ n: Int, _ mean: T
  ) -> T {
    var acc = SIMD8<T>()
    let m = SIMD8<T>(repeating: mean)
    var j = 0
    while j + 8 <= n {
      let d = load8(p + j) - m
      acc += d * d
      j += 8
    }
    var s = acc.sum()
    while j < n {
      let d = p[j] - mean
      s += d * d
      j += 1
    }
    return s
  }

  /// `(sum_j d[j], sum_j d[j] * (p[j] - mean))`.
  @inline(__always) static func sumAndCenteredDot<T: Scalar>(
    _ d: UnsafeMutablePointer<T>, _ p: UnsafeMutablePointer<T>, _ n: Int, _ mean: T
  ) -> (T, T) {
    var a = SIMD8<T>()
    var b = SIMD8<T>()
    let m = SIMD8<T>(repeating: mean)
    var j = 0
    while j + 8 <= n {
      let dv = load8(d + j)
      a += dv
      b += dv * (load8(p + j) - m)
      j += 8
    }
    var (sa, sb) = (a.sum(), b.sum())
    while j < n {
      sa += d[j]
      sb += d[j] * (p[j] - mean)
      j += 1
    }
    return (sa, sb)
  }
}
