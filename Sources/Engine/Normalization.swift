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
/// With `relu: true` the forward pass also applies ReLU (`y * (y > 0 ? 1 : 0)`, ReLU's own
/// formula), and the backward pass takes the fused output as `reluOutput` and masks `dy`
/// with it first: the same bits as separate batch-norm and ReLU layers, one pass fewer.
public enum BatchNormKernel {
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func forward<T: Scalar>(
    x: Tensor<T>, gamma: Tensor<T>, beta: Tensor<T>, runningMean: Tensor<T>,
    runningVar: Tensor<T>, training: Bool, momentum: T, eps: T, y: Tensor<T>,
    savedMean: Tensor<T>, savedInvStd: Tensor<T>, relu: Bool = false
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
    y.layout = x.layout
    savedMean.resize([c])
    savedInvStd.resize([c])
    if x.layout.isBlocked {
      forwardBlocked(
        x: x, gamma: gamma, beta: beta, runningMean: runningMean, runningVar: runningVar,
        training: training, momentum: momentum, eps: eps, y: y, savedMean: savedMean,
        savedInvStd: savedInvStd, relu: relu)
      return
    }
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
          if relu {
            // Exactly ReLU's kernel applied to the batch-norm output (a 0/1 mask product).
            for j in 0..<hw {
              let t = p[j] * scale + shift
              let m: T = t > 0 ? 1 : 0
              q[j] = t * m
            }
          } else {
            for j in 0..<hw { q[j] = p[j] * scale + shift }
          }
        }
      }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func backward<T: Scalar>(
    x: Tensor<T>, gamma: Tensor<T>, dy: Tensor<T>, savedMean: Tensor<T>, savedInvStd: Tensor<T>,
    training: Bool, dGamma: Tensor<T>, dBeta: Tensor<T>, dx: Tensor<T>?, reluOutput: Tensor<T>? = nil
  ) {
    precondition(
      reluOutput == nil || x.layout.isBlocked, "fused ReLU backward is for blocked layouts; mask dy first")
    let (n, c) = (x.shape[0], x.shape[1])
    let hw = x.shape.count == 4 ? x.shape[2] * x.shape[3] : 1
    let m = T(n * hw)
    dx?.resize(x.shape)
    dx?.layout = x.layout
    if x.layout.isBlocked {
      backwardBlocked(
        x: x, gamma: gamma, dy: dy, savedMean: savedMean, savedInvStd: savedInvStd,
        training: training, dGamma: dGamma, dBeta: dBeta, dx: dx, reluOutput: reluOutput)
      return
    }
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

extension BatchNormKernel {
  /// How a blocked tensor is walked: the B-channel block of one example is `B * hw`
  /// contiguous values, read in vectors of 16 lanes, lane `l` holding channel `l % B` of the
  /// block: one position per vector for nChw16c, two for nChw8c. With B = 8 and an odd `hw`
  /// the last vector is half (upper lanes read as zero, never stored).
  struct Blocking {
    let b: Int
    let full: Int
    let half: Bool
    init(_ layout: TensorLayout, hw: Int) {
      b = layout.block
      full = b * hw / 16
      half = (b * hw) % 16 != 0
    }
    /// Calls `body(offset, half)` for every vector of one block.
    @inline(__always) func vectors(_ body: (_ offset: Int, _ half: Bool) -> Void) {
      for k in 0..<full { body(k * 16, false) }
      if half { body(full * 16, true) }
    }
  }

  /// Per-channel sums over a blocked tensor: `f` adds one block's vectors to `acc`. Sharded
  /// by example; each shard sums its examples (Float lanes over one example's positions,
  /// then Double per channel), and the shard partials are added in shard order, so the
  /// result does not depend on the thread count.
  @inline(__always)
  static func blockedSums<T: Scalar>(
    n: Int, c: Int, hw: Int, block b: Int, _ out: UnsafeMutablePointer<Double>, outputs: Int,
    _ f: (_ base: Int, _ cb: Int, _ acc: inout (SIMD16<T>, SIMD16<T>)) -> Void
  ) {
    let shards = Parallel.batchShards(n)
    let partial = UnsafeMutablePointer<Double>.allocate(capacity: shards * outputs * c)
    defer { partial.deallocate() }
    partial.initialize(repeating: 0, count: shards * outputs * c)
    Parallel.forEach(shards) { s in
      let mine = partial + s * outputs * c
      for i in Parallel.range(s, of: shards, n) {
        for cb in 0..<(c / b) {
          var acc = (SIMD16<T>(), SIMD16<T>())
          f((i * c + cb * b) * hw, cb, &acc)
          for l in 0..<16 {
            mine[cb * b + l % b] += Double(acc.0[l])
            if outputs > 1 { mine[c + cb * b + l % b] += Double(acc.1[l]) }
          }
        }
      }
    }
    out.update(from: partial, count: outputs * c)
    for s in 1..<shards {
      for j in 0..<(outputs * c) { out[j] += partial[s * outputs * c + j] }
    }
  }

  /// `v * (r > 0 ? 1 : 0)` lane-wise: ReLU's forward (`r = v`) and backward (`r` = output)
  /// products. Written for concrete Float so it compiles to compare + blend (generic SIMD
  /// masks compile to per-lane code).
  @inline(__always) static func maskProduct<T: Scalar>(_ v: SIMD16<T>, where r: SIMD16<T>) -> SIMD16<T> {
    if T.self == Float.self {
      let (vf, rf) = (unsafeBitCast(v, to: SIMD16<Float>.self), unsafeBitCast(r, to: SIMD16<Float>.self))
      return unsafeBitCast(vf * SIMD16<Float>().replacing(with: 1, where: rf .> 0), to: SIMD16<T>.self)
    }
    var out = v
    for l in 0..<16 { out[l] = v[l] * (r[l] > 0 ? 1 : 0) }
    return out
  }

  /// 16 values at `p`, or 8 and zeros when `half`.
  @inline(__always) static func load16<T: Scalar>(_ p: UnsafeMutablePointer<T>, half: Bool = false) -> SIMD16<
    T
  > {
    if half { return SIMD16(lowHalf: UnsafeRawPointer(p).loadUnaligned(as: SIMD8<T>.self), highHalf: .zero) }
    return UnsafeRawPointer(p).loadUnaligned(as: SIMD16<T>.self)
  }
  /// Stores 16 values at `p`, or the lower 8 when `half`.
  @inline(__always) static func store16<T: Scalar>(
    _ v: SIMD16<T>, _ p: UnsafeMutablePointer<T>, half: Bool = false
  ) {
    if half {
      UnsafeMutableRawPointer(p).storeBytes(of: v.lowHalf, as: SIMD8<T>.self)
    } else {
      UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<T>.self)
    }
  }
  /// Channel parameters of block `cb` in lane order: 16 channels, or 8 channels twice.
  @inline(__always) static func lanes<T: Scalar>(_ t: UnsafeMutablePointer<T>, _ cb: Int, _ b: Int) -> SIMD16<
    T
  > {
    if b == 16 { return load16(t + cb * 16) }
    let v = UnsafeRawPointer(t + cb * 8).loadUnaligned(as: SIMD8<T>.self)
    return SIMD16(lowHalf: v, highHalf: v)
  }

  /// ``forward(x:gamma:beta:runningMean:runningVar:training:momentum:eps:y:savedMean:savedInvStd:)``
  /// on nChw16c or nChw8c: same formulas, channels as SIMD lanes.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  static func forwardBlocked<T: Scalar>(
    x: Tensor<T>, gamma: Tensor<T>, beta: Tensor<T>, runningMean: Tensor<T>,
    runningVar: Tensor<T>, training: Bool, momentum: T, eps: T, y: Tensor<T>,
    savedMean: Tensor<T>, savedInvStd: Tensor<T>, relu: Bool
  ) {
    let (n, c) = (x.shape[0], x.shape[1])
    let hw = x.shape[2] * x.shape[3]
    let m = n * hw
    let xp = x.data
    let blk = Blocking(x.layout, hw: hw)
    let b = blk.b
    if training {
      let sums = UnsafeMutablePointer<Double>.allocate(capacity: c)
      defer { sums.deallocate() }
      blockedSums(n: n, c: c, hw: hw, block: b, sums, outputs: 1) {
        (base: Int, _, acc: inout (SIMD16<T>, SIMD16<T>)) in
        blk.vectors { o, half in acc.0 += load16(xp + base + o, half: half) }
      }
      for ch in 0..<c { savedMean.data[ch] = T(sums[ch] / Double(m)) }
      let mean = savedMean.data
      blockedSums(n: n, c: c, hw: hw, block: b, sums, outputs: 1) {
        (base: Int, cb: Int, acc: inout (SIMD16<T>, SIMD16<T>)) in
        let mu = lanes(mean, cb, b)
        blk.vectors { o, half in
          var d = load16(xp + base + o, half: half) - mu
          if half { d.highHalf = .zero }
          acc.0 += d * d
        }
      }
      for ch in 0..<c {
        let variance = T(sums[ch] / Double(m))
        runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * mean[ch]
        runningVar.data[ch] = (1 - momentum) * runningVar.data[ch] + momentum * T(sums[ch] / Double(m - 1))
        savedInvStd.data[ch] = 1 / (variance + eps).squareRoot()
      }
    } else {
      for ch in 0..<c {
        savedMean.data[ch] = runningMean.data[ch]
        savedInvStd.data[ch] = 1 / (runningVar.data[ch] + eps).squareRoot()
      }
    }
    let (mean, invStd, yp) = (savedMean.data, savedInvStd.data, y.data)
    let shards = Parallel.batchShards(n)
    Parallel.forEach(shards) { s in
      for i in Parallel.range(s, of: shards, n) {
        for cb in 0..<(c / b) {
          let scale = lanes(gamma.data, cb, b) * lanes(invStd, cb, b)
          let shift = lanes(beta.data, cb, b) - lanes(mean, cb, b) * scale
          let base = (i * c + cb * b) * hw
          if relu {
            blk.vectors { o, half in
              let t = load16(xp + base + o, half: half) * scale + shift
              store16(maskProduct(t, where: t), yp + base + o, half: half)
            }
          } else {
            blk.vectors { o, half in
              store16(load16(xp + base + o, half: half) * scale + shift, yp + base + o, half: half)
            }
          }
        }
      }
    }
  }

  /// ``backward(x:gamma:dy:savedMean:savedInvStd:training:dGamma:dBeta:dx:)`` on nChw16c or
  /// nChw8c.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  static func backwardBlocked<T: Scalar>(
    x: Tensor<T>, gamma: Tensor<T>, dy: Tensor<T>, savedMean: Tensor<T>, savedInvStd: Tensor<T>,
    training: Bool, dGamma: Tensor<T>, dBeta: Tensor<T>, dx: Tensor<T>?, reluOutput: Tensor<T>?
  ) {
    let (n, c) = (x.shape[0], x.shape[1])
    let hw = x.shape[2] * x.shape[3]
    let m = T(n * hw)
    let (xp, dyp, mean, invStd) = (x.data, dy.data, savedMean.data, savedInvStd.data)
    let blk = Blocking(x.layout, hw: hw)
    let b = blk.b
    // With a fused ReLU, dy is first masked by its output (ReLU's backward, on the fly).
    let rp = reluOutput?.data
    @inline(__always) func grad(_ k: Int, _ half: Bool) -> SIMD16<T> {
      let d = load16(dyp + k, half: half)
      guard let rp else { return d }
      return maskProduct(d, where: load16(rp + k, half: half))
    }
    let sums = UnsafeMutablePointer<Double>.allocate(capacity: 2 * c)
    defer { sums.deallocate() }
    // Half vectors: the gradient's upper lanes are zero, so they add nothing.
    blockedSums(n: n, c: c, hw: hw, block: b, sums, outputs: 2) {
      (base: Int, cb: Int, acc: inout (SIMD16<T>, SIMD16<T>)) in
      let mu = lanes(mean, cb, b)
      blk.vectors { o, half in
        let d = grad(base + o, half)
        acc.0 += d
        acc.1 += d * (load16(xp + base + o, half: half) - mu)
      }
    }
    for ch in 0..<c {
      dBeta.data[ch] = T(sums[ch])
      dGamma.data[ch] = T(sums[c + ch]) * invStd[ch]
    }
    guard let dx else { return }
    let dxp = dx.data
    let shards = Parallel.batchShards(n)
    Parallel.forEach(shards) { s in
      for i in Parallel.range(s, of: shards, n) {
        for cb in 0..<(c / b) {
          let inv = lanes(invStd, cb, b)
          let g = lanes(gamma.data, cb, b) * inv
          let base = (i * c + cb * b) * hw
          if training {
            let k1 = g / SIMD16(repeating: m)
            let (mu, db, dg) = (lanes(mean, cb, b), lanes(dBeta.data, cb, b), lanes(dGamma.data, cb, b))
            let mv = SIMD16<T>(repeating: m)
            blk.vectors { o, half in
              let xhat = (load16(xp + base + o, half: half) - mu) * inv
              store16(k1 * (mv * grad(base + o, half) - db - xhat * dg), dxp + base + o, half: half)
            }
          } else {
            blk.vectors { o, half in store16(g * grad(base + o, half), dxp + base + o, half: half) }
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
