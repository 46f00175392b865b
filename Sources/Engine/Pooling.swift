/// Max, average and global-average pooling over NCHW tensors.
///
/// Max: `y[n,c,i,j] = max_{p,q} x[n,c,i*s-pad+p, j*s-pad+q]` over in-range positions; the
/// backward pass routes `dy` to the (first) arg-max. Average: the mean over the window with
/// zero padding counted (PyTorch's `count_include_pad=True`). Global average:
/// `y[n,c] = mean_{h,w} x[n,c,h,w]`. Every `(n, c)` plane is independent, so shards never
/// interact.
public struct PoolGeometry: Equatable, Sendable {
  public var kernel, stride, padding: Int
  public init(kernel: Int, stride: Int? = nil, padding: Int = 0) {
    self.kernel = kernel
    self.stride = stride ?? kernel
    self.padding = padding
  }
  public func outputShape(_ s: [Int]) throws -> [Int] {
    guard s.count == 4 else { throw EngineError("pool: expected NCHW input, got shape \(s)") }
    guard padding * 2 <= kernel else {
      throw EngineError("pool: padding \(padding) must be at most half the kernel \(kernel)")
    }
    let oh = (s[2] + 2 * padding - kernel) / stride + 1
    let ow = (s[3] + 2 * padding - kernel) / stride + 1
    guard oh > 0, ow > 0 else {
      throw EngineError("pool: input \(s[2])x\(s[3]) is smaller than the kernel \(kernel)")
    }
    return [s[0], s[1], oh, ow]
  }
}

public enum Pooling {
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func maxForward<T: Scalar>(
    _ g: PoolGeometry, x: Tensor<T>, y: Tensor<T>, argmax: inout [Int32]
  ) throws {
    let os = try g.outputShape(x.shape)
    y.resize(os)
    if argmax.count != y.count { argmax = [Int32](repeating: 0, count: y.count) }
    if x.layout.isBlocked {
      maxForwardBlocked(g, x: x, y: y, argmax: &argmax)
      return
    }
    let planes = os[0] * os[1]
    let (h, w, oh, ow) = (x.shape[2], x.shape[3], os[2], os[3])
    argmax.withUnsafeMutableBufferPointer { am in
      let amp = UncheckedBox(am.baseAddress!)
      let shards = Parallel.batchShards(planes)
      Parallel.forEach(shards) { s in
        for pl in Parallel.range(s, of: shards, planes) {
          let xp = x.data + pl * h * w
          let yp = y.data + pl * oh * ow
          let ap = amp.value + pl * oh * ow
          if g.kernel == 2 && g.stride == 2 && g.padding == 0 {
            // The common 2x2 window: the same visiting order and tie rule (the first
            // maximum wins) as the general loop below; Float planes 8 outputs at a time.
            for i in 0..<oh {
              let r0 = 2 * i * w
              var j0 = 0
              if T.self == Float.self {
                j0 = maxPool2x2Row(
                  UnsafeRawPointer(xp + r0).assumingMemoryBound(to: Float.self), w: w,
                  y: UnsafeMutableRawPointer(yp + i * ow).assumingMemoryBound(to: Float.self),
                  argmax: ap + i * ow, first: r0, count: ow)
              }
              for j in j0..<ow {
                let i0 = r0 + 2 * j
                var best = xp[i0]
                var bi = i0
                if xp[i0 + 1] > best { (best, bi) = (xp[i0 + 1], i0 + 1) }
                if xp[i0 + w] > best { (best, bi) = (xp[i0 + w], i0 + w) }
                if xp[i0 + w + 1] > best { (best, bi) = (xp[i0 + w + 1], i0 + w + 1) }
                yp[i * ow + j] = best
                ap[i * ow + j] = Int32(bi)
              }
            }
            continue
          }
          for i in 0..<oh {
            for j in 0..<ow {
              var best = -T.infinity
              var bi: Int32 = -1
              for p in 0..<g.kernel {
                let ih = i * g.stride - g.padding + p
                if ih < 0 || ih >= h { continue }
                for q in 0..<g.kernel {
                  let iw = j * g.stride - g.padding + q
                  if iw < 0 || iw >= w { continue }
                  let v = xp[ih * w + iw]
                  if v > best || bi < 0 {
                    best = v
                    bi = Int32(ih * w + iw)
                  }
                }
              }
              yp[i * ow + j] = best
              ap[i * ow + j] = bi
            }
          }
        }
      }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func maxBackward<T: Scalar>(
    inputShape: [Int], dy: Tensor<T>, argmax: [Int32], dx: Tensor<T>
  ) {
    dx.resize(inputShape)
    if dy.layout.isBlocked {
      maxBackwardBlocked(inputShape: inputShape, dy: dy, argmax: argmax, dx: dx)
      return
    }
    let planes = inputShape[0] * inputShape[1]
    let hw = inputShape[2] * inputShape[3]
    let ohw = dy.shape[2] * dy.shape[3]
    argmax.withUnsafeBufferPointer { am in
      let amp = UncheckedBox(am.baseAddress!)
      let shards = Parallel.batchShards(planes)
      Parallel.forEach(shards) { s in
        for pl in Parallel.range(s, of: shards, planes) {
          let dxp = dx.data + pl * hw
          dxp.update(repeating: 0, count: hw)
          let dyp = dy.data + pl * ohw
          let ap = amp.value + pl * ohw
          for o in 0..<ohw { dxp[Int(ap[o])] += dyp[o] }
        }
      }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func avgForward<T: Scalar>(_ g: PoolGeometry, x: Tensor<T>, y: Tensor<T>) throws {
    let os = try g.outputShape(x.shape)
    y.resize(os)
    let planes = os[0] * os[1]
    let (h, w, oh, ow) = (x.shape[2], x.shape[3], os[2], os[3])
    let scale = 1 / T(g.kernel * g.kernel)
    let shards = Parallel.batchShards(planes)
    Parallel.forEach(shards) { s in
      for pl in Parallel.range(s, of: shards, planes) {
        let xp = x.data + pl * h * w
        let yp = y.data + pl * oh * ow
        for i in 0..<oh {
          for j in 0..<ow {
            var acc: T = 0
            for p in 0..<g.kernel {
              let ih = i * g.stride - g.padding + p
              if ih < 0 || ih >= h { continue }
              for q in 0..<g.kernel {
                let iw = j * g.stride - g.padding + q
                if iw >= 0 && iw < w { acc += xp[ih * w + iw] }
              }
            }
            yp[i * ow + j] = acc * scale
          }
        }
      }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func avgBackward<T: Scalar>(
    _ g: PoolGeometry, inputShape: [Int], dy: Tensor<T>, dx: Tensor<T>
  ) {
    dx.resize(inputShape)
    let planes = inputShape[0] * inputShape[1]
    let (h, w, oh, ow) = (inputShape[2], inputShape[3], dy.shape[2], dy.shape[3])
    let scale = 1 / T(g.kernel * g.kernel)
    let shards = Parallel.batchShards(planes)
    Parallel.forEach(shards) { s in
      for pl in Parallel.range(s, of: shards, planes) {
        let dxp = dx.data + pl * h * w
        dxp.update(repeating: 0, count: h * w)
        let dyp = dy.data + pl * oh * ow
        for i in 0..<oh {
          for j in 0..<ow {
            let v = dyp[i * ow + j] * scale
            for p in 0..<g.kernel {
              let ih = i * g.stride - g.padding + p
              if ih < 0 || ih >= h { continue }
              for q in 0..<g.kernel {
                let iw = j * g.stride - g.padding + q
                if iw >= 0 && iw < w { dxp[ih * w + iw] += v }
              }
            }
          }
        }
      }
    }
  }

  /// `[N, C, H, W] -> [N, C]`, the mean over each plane.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func globalAvgForward<T: Scalar>(x: Tensor<T>, y: Tensor<T>) throws {
    guard x.shape.count == 4 else {
      throw EngineError("global average pool: expected NCHW input, got shape \(x.shape)")
    }
    y.resize([x.shape[0], x.shape[1]])
    let hw = x.shape[2] * x.shape[3]
    let scale = 1 / T(hw)
    for pl in 0..<y.count {
      var acc: T = 0
      let xp = x.data + pl * hw
      for j in 0..<hw { acc += xp[j] }
      y.data[pl] = acc * scale
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func globalAvgBackward<T: Scalar>(inputShape: [Int], dy: Tensor<T>, dx: Tensor<T>) {
    dx.resize(inputShape)
    let hw = inputShape[2] * inputShape[3]
    let scale = 1 / T(hw)
    for pl in 0..<dy.count {
      (dx.data + pl * hw).update(repeating: dy.data[pl] * scale, count: hw)
    }
  }
}

extension Pooling {
  /// Max pooling on nChw16c or nChw8c: the channels of a block as SIMD lanes, same window
  /// order and tie rule (first maximum) as the NCHW kernel; `argmax` holds, per output
  /// element in blocked order, the input position `ih * W + iw` of its lane.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  static func maxForwardBlocked<T: Scalar>(
    _ g: PoolGeometry, x: Tensor<T>, y: Tensor<T>, argmax: inout [Int32]
  ) {
    // Blocked tensors come from oneDNN, which is Float only; Float also makes the comparison
    // mask and the Int32 positions the same SIMD shape (compare + blend, no lane loops).
    precondition(T.self == Float.self, "blocked max pooling is implemented for Float")
    y.layout = x.layout
    let b = x.layout.block
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (oh, ow) = (y.shape[2], y.shape[3])
    let blocks = n * c / b
    let xf = UnsafeMutableRawPointer(x.data).assumingMemoryBound(to: Float.self)
    let yf = UnsafeMutableRawPointer(y.data).assumingMemoryBound(to: Float.self)
    argmax.withUnsafeMutableBufferPointer { am in
      let amp = UncheckedBox(am.baseAddress!)
      let shards = Parallel.batchShards(blocks)
      Parallel.forEach(shards) { s in
        for k in Parallel.range(s, of: shards, blocks) {
          let (xb, yb, ab) = (xf + k * h * w * b, yf + k * oh * ow * b, amp.value + k * oh * ow * b)
          maxPoolBlock(g, xb, h, w, yb, ab, oh, ow, block: b)
        }
      }
    }
  }

  /// One block of B channels (8 or 16): `[H][W][B] -> [OH][OW][B]` and the arg-max
  /// positions, as B/8 lanes of `SIMD8` (concrete types: a generic SIMD version was left
  /// with a scalar loop per lane for SIMD8, 10% of a Conv-2 step under the AVX2 cap).
  @inline(__always)
  static func maxPoolBlock(
    _ g: PoolGeometry, _ xp: UnsafeMutablePointer<Float>, _ h: Int, _ w: Int,
    _ yp: UnsafeMutablePointer<Float>, _ ap: UnsafeMutablePointer<Int32>, _ oh: Int, _ ow: Int,
    block b: Int
  ) {
    for i in 0..<oh {
      for j in 0..<ow {
        for c in stride(from: 0, to: b, by: 8) {
          var best = SIMD8<Float>()
          var bi = SIMD8<Int32>()
          var first = true
          for p in 0..<g.kernel {
            let ih = i * g.stride - g.padding + p
            if ih < 0 || ih >= h { continue }
            for q in 0..<g.kernel {
              let iw = j * g.stride - g.padding + q
              if iw < 0 || iw >= w { continue }
              let v = UnsafeRawPointer(xp + (ih * w + iw) * b + c).loadUnaligned(as: SIMD8<Float>.self)
              let pos = SIMD8<Int32>(repeating: Int32(ih * w + iw))
              if first {
                (best, bi, first) = (v, pos, false)
              } else {
                let take = v .> best
                best.replace(with: v, where: take)
                bi.replace(with: pos, where: take)
              }
            }
          }
          let o = (i * ow + j) * b + c
          UnsafeMutableRawPointer(yp + o).storeBytes(of: best, as: SIMD8<Float>.self)
          UnsafeMutableRawPointer(ap + o).storeBytes(of: bi, as: SIMD8<Int32>.self)
        }
      }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  static func maxBackwardBlocked<T: Scalar>(
    inputShape: [Int], dy: Tensor<T>, argmax: [Int32], dx: Tensor<T>
  ) {
    dx.layout = dy.layout
    let b = dy.layout.block
    let blocks = inputShape[0] * inputShape[1] / b
    let hw = inputShape[2] * inputShape[3]
    let ohw = dy.shape[2] * dy.shape[3]
    argmax.withUnsafeBufferPointer { am in
      let amp = UncheckedBox(am.baseAddress!)
      let shards = Parallel.batchShards(blocks)
      Parallel.forEach(shards) { s in
        for k in Parallel.range(s, of: shards, blocks) {
          let dxp = dx.data + k * hw * b
          dxp.update(repeating: 0, count: hw * b)
          let dyp = dy.data + k * ohw * b
          let ap = amp.value + k * ohw * b
          for o in 0..<ohw {
            for l in 0..<b { dxp[Int(ap[o * b + l]) * b + l] += dyp[o * b + l] }
          }
        }
      }
    }
  }
}

/// One output row of 2x2, stride-2 max pooling over NCHW Float rows `x` (row `i`) and `x + w`
/// (row `i + 1`), 8 outputs at a time: the four candidates in the order (0,0), (0,1),
/// (1,0), (1,1), a later one replacing the best only when strictly greater (as the scalar
/// loop). Writes outputs `0 ..< 8 * (count / 8)` and returns that count; `first` is the
/// flat index of `x[0]` in the plane (for `argmax`).
@inline(__always)
func maxPool2x2Row(
  _ x: UnsafePointer<Float>, w: Int, y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>,
  first: Int, count: Int
) -> Int {
  var j = 0
  let lane = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
  while j + 8 <= count {
    let a = UnsafeRawPointer(x + 2 * j).loadUnaligned(as: SIMD16<Float>.self)
    let b = UnsafeRawPointer(x + w + 2 * j).loadUnaligned(as: SIMD16<Float>.self)
    let base = SIMD8<Int32>(repeating: Int32(first + 2 * j)) &+ lane
    var best = a.evenHalf
    var idx = base
    @inline(__always) func consider(_ v: SIMD8<Float>, _ d: Int32) {
      let m = v .> best
      best.replace(with: v, where: m)
      idx.replace(with: base &+ d, where: m)
    }
    consider(a.oddHalf, 1)
    consider(b.evenHalf, Int32(w))
    consider(b.oddHalf, Int32(w + 1))
    UnsafeMutableRawPointer(y + j).storeBytes(of: best, as: SIMD8<Float>.self)
    UnsafeMutableRawPointer(argmax + j).storeBytes(of: idx, as: SIMD8<Int32>.self)
    j += 8
  }
  return j
}
