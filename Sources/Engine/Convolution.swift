/// 2-D convolution (cross-correlation, as PyTorch's `Conv2d`), NCHW input, OIHW weights.
///
/// `y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] * x[n, c, i*sh - ph + p, j*sw - pw + q]`
/// (out-of-range input is zero padding). Implemented as im2col + GEMM per example:
/// `col[(c*KH + p)*KW + q, i*OW + j]` holds the input patch, then `y_n = W * col`.
/// Backward: `dW = sum_n dy_n * col_n^T`, `dcol = W^T * dy_n` followed by col2im (scatter-add)
/// for `dx`, and `db[o] = sum_{n,i,j} dy[n, o, i, j]`.
///
/// The batch is split into ``Parallel/batchShards(_:)`` shards. Each shard accumulates its
/// own partial `dW`, `db` in a ``ConvWorkspace``; the partials are then summed in shard
/// order, so the result does not depend on the thread count.
public struct ConvGeometry: Equatable, Sendable, CustomStringConvertible {
  public var inChannels, outChannels, kernelH, kernelW, strideH, strideW, padH, padW: Int
  public init(
    inChannels: Int, outChannels: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
    padding: (Int, Int) = (0, 0)
  ) {
    self.inChannels = inChannels
    self.outChannels = outChannels
    (kernelH, kernelW) = kernel
    (strideH, strideW) = stride
    (padH, padW) = padding
  }
  /// Output height and width for an input of `h x w`.
  public func outputSize(_ h: Int, _ w: Int) -> (Int, Int) {
    ((h + 2 * padH - kernelH) / strideH + 1, (w + 2 * padW - kernelW) / strideW + 1)
  }
  /// Rows of the im2col matrix: `C * KH * KW`.
  public var patchSize: Int { inChannels * kernelH * kernelW }
  /// True for 1x1, stride-1, unpadded convolutions (im2col is the identity).
  public var isPointwise: Bool {
    kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padH == 0 && padW == 0
  }
  public var description: String {
    "conv \(inChannels)->\(outChannels) k\(kernelH)x\(kernelW) s\(strideH)x\(strideW) p\(padH)x\(padW)"
  }
}

/// Scratch buffers for convolution, kept between steps (no allocation per step).
public final class ConvWorkspace<T: Scalar>: @unchecked Sendable {
  var col: [Tensor<T>] = []
  var dcol: [Tensor<T>] = []
  var dW: [Tensor<T>] = []
  var db: [Tensor<T>] = []
  /// oneDNN per-shard buffers (see `OneDNNConvolution`).
  var dnnlBuffers: [[Tensor<T>]] = []
  var dnnlScratch: [Tensor<T>] = []
  var zeros = Tensor<T>(zeros: [0])
  public init() {}

  /// im2col buffers per thread slot; partial gradients per shard (reduced in shard order).
  func prepare(shards: Int, slots: Int, colCount: Int, weightCount: Int, outChannels: Int) {
    while col.count < slots {
      col.append(Tensor(zeros: [0]))
      dcol.append(Tensor(zeros: [0]))
    }
    while dW.count < shards {
      dW.append(Tensor(zeros: [0]))
      db.append(Tensor(zeros: [0]))
    }
    for s in 0..<slots where col[s].count < colCount {
      col[s].resize([colCount])
      dcol[s].resize([colCount])
    }
    for s in 0..<shards {
      dW[s].resize([weightCount])
      db[s].resize([outChannels])
    }
  }
}

public enum Convolution {
  /// Output shape for input shape `[N, C, H, W]`, or an error naming the mismatch.
  public static func outputShape(_ g: ConvGeometry, input: [Int]) throws -> [Int] {
    guard input.count == 4 else {
      throw EngineError("\(g): expected a 4-D NCHW input, got shape \(input)")
    }
    guard input[1] == g.inChannels else {
      throw EngineError("\(g): expected \(g.inChannels) input channels, got shape \(input)")
    }
    let (oh, ow) = g.outputSize(input[2], input[3])
    guard oh > 0, ow > 0 else {
      throw EngineError("\(g): input \(input[2])x\(input[3]) is smaller than the kernel")
    }
    return [input[0], g.outChannels, oh, ow]
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(__always)
  static func im2col<T: Scalar>(
    _ x: UnsafePointer<T>, _ g: ConvGeometry, h: Int, w: Int, oh: Int, ow: Int,
    _ col: UnsafeMutablePointer<T>, outputRows: Range<Int>? = nil
  ) {
    // Only output rows `outputRows` (default all): `col` is then `[C*KH*KW, rows * ow]`.
    let rows = outputRows ?? 0..<oh
    let p = rows.count * ow
    for c in 0..<g.inChannels {
      let xc = x + c * h * w
      for kh in 0..<g.kernelH {
        for kw in 0..<g.kernelW {
          let row = col + ((c * g.kernelH + kh) * g.kernelW + kw) * p
          for i in rows {
            let ih = i * g.strideH - g.padH + kh
            let dst = row + (i - rows.lowerBound) * ow
            if ih < 0 || ih >= h {
              dst.update(repeating: 0, count: ow)
              continue
            }
            let src = xc + ih * w
            if g.strideW == 1 {
              let off = kw - g.padW
              // valid j: 0 <= j + off < w
              let j0 = max(0, -off)
              let j1 = min(ow, w - off)
              if j0 > 0 { dst.update(repeating: 0, count: min(j0, ow)) }
              if j1 > j0 { (dst + j0).update(from: src + j0 + off, count: j1 - j0) }
              if j1 < ow { (dst + max(j1, 0)).update(repeating: 0, count: ow - max(j1, 0)) }
            } else {
              for j in 0..<ow {
                let iw = j * g.strideW - g.padW + kw
                dst[j] = (iw >= 0 && iw < w) ? src[iw] : 0
              }
            }
          }
        }
      }
    }
  }

  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(__always)
  static func col2im<T: Scalar>(
    _ col: UnsafePointer<T>, _ g: ConvGeometry, h: Int, w: Int, oh: Int, ow: Int,
    _ dx: UnsafeMutablePointer<T>, outputRows: Range<Int>? = nil
  ) {
    // All output rows: `dx` is overwritten. A range of them (`col` as `im2col` wrote it for
    // those rows): their contributions are added to `dx`.
    if outputRows == nil { dx.update(repeating: 0, count: g.inChannels * h * w) }
    let rows = outputRows ?? 0..<oh
    let p = rows.count * ow
    for c in 0..<g.inChannels {
      let xc = dx + c * h * w
      for kh in 0..<g.kernelH {
        for kw in 0..<g.kernelW {
          let row = col + ((c * g.kernelH + kh) * g.kernelW + kw) * p
          for i in rows {
            let ih = i * g.strideH - g.padH + kh
            if ih < 0 || ih >= h { continue }
            let src = row + (i - rows.lowerBound) * ow
            let dst = xc + ih * w
            if g.strideW == 1 {
              let off = kw - g.padW
              let j0 = max(0, -off)
              let j1 = min(ow, w - off)
              var j = j0
              while j + 8 <= j1 {
                store8(load8(dst + j + off) + load8(src + j), dst + j + off)
                j += 8
              }
              while j < j1 {
                dst[j + off] += src[j]
                j += 1
              }
            } else {
              for j in 0..<ow {
                let iw = j * g.strideW - g.padW + kw
                if iw >= 0 && iw < w { dst[iw] += src[j] }
              }
            }
          }
        }
      }
    }
  }

  /// Forward convolution; `y` is resized to the output shape.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func forward<T: Scalar>(
    _ g: ConvGeometry, x: Tensor<T>, weight: Tensor<T>, bias: Tensor<T>?, y: Tensor<T>,
    workspace ws: ConvWorkspace<T>
  ) throws {
    let outShape = try outputShape(g, input: x.shape)
    try weight.expectShape([g.outChannels, g.inChannels, g.kernelH, g.kernelW], "\(g) weight")
    y.resize(outShape)
    let (n, h, w, oh, ow) = (x.shape[0], x.shape[2], x.shape[3], outShape[2], outShape[3])
    let p = oh * ow
    let k = g.patchSize
    let shards = Parallel.batchShards(n)
    let slots = min(shards, Parallel.slotCount)
    ws.prepare(
      shards: shards, slots: slots, colCount: g.isPointwise ? 0 : k * p, weightCount: 0, outChannels: 0)
    Parallel.forEach(shards, slots: slots) { s, slot in
      let col = ws.col[slot].data
      for i in Parallel.range(s, of: shards, n) {
        let xn = x.data + i * g.inChannels * h * w
        let yn = y.data + i * g.outChannels * p
        let b: UnsafePointer<T>
        if g.isPointwise {
          b = UnsafePointer(xn)
        } else {
          im2col(xn, g, h: h, w: w, oh: oh, ow: ow, col)
          b = UnsafePointer(col)
        }
        if let bias {
          for o in 0..<g.outChannels { (yn + o * p).update(repeating: bias.data[o], count: p) }
        }
        T.gemm(
          transA: false, transB: false, m: g.outChannels, n: p, k: k, alpha: 1, a: weight.data,
          lda: k, b: b, ldb: p, beta: bias == nil ? 0 : 1, c: yn, ldc: p)
      }
    }
  }

  /// Backward convolution: writes `dWeight`, `dBias` (if non-nil) and `dx` (if non-nil).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func backward<T: Scalar>(
    _ g: ConvGeometry, x: Tensor<T>, weight: Tensor<T>, dy: Tensor<T>,
    dWeight: Tensor<T>, dBias: Tensor<T>?, dx: Tensor<T>?, workspace ws: ConvWorkspace<T>
  ) {
    let (n, h, w, oh, ow) = (x.shape[0], x.shape[2], x.shape[3], dy.shape[2], dy.shape[3])
    let p = oh * ow
    let k = g.patchSize
    let wc = g.outChannels * k
    let shards = Parallel.batchShards(n)
    let slots = min(shards, Parallel.slotCount)
    ws.prepare(shards: shards, slots: slots, colCount: k * p, weightCount: wc, outChannels: g.outChannels)
    dx?.resize(x.shape)
    Parallel.forEach(shards, slots: slots) { s, slot in
      let col = ws.col[slot].data
      let dcol = ws.dcol[slot].data
      let dWs = ws.dW[s].data
      let dbs = ws.db[s].data
      dWs.update(repeating: 0, count: wc)
      dbs.update(repeating: 0, count: g.outChannels)
      for i in Parallel.range(s, of: shards, n) {
        let xn = x.data + i * g.inChannels * h * w
        let dyn = dy.data + i * g.outChannels * p
        let b: UnsafePointer<T>
        if g.isPointwise {
          b = UnsafePointer(xn)
        } else {
          im2col(xn, g, h: h, w: w, oh: oh, ow: ow, col)
          b = UnsafePointer(col)
        }
        T.gemm(
          transA: false, transB: true, m: g.outChannels, n: k, k: p, alpha: 1, a: dyn, lda: p,
          b: b, ldb: p, beta: 1, c: dWs, ldc: k)
        if dBias != nil {
          for o in 0..<g.outChannels {
            var acc: T = 0
            let row = dyn + o * p
            for j in 0..<p { acc += row[j] }
            dbs[o] += acc
          }
        }
        if let dx {
          let dxn = dx.data + i * g.inChannels * h * w
          if g.isPointwise {
            T.gemm(
              transA: true, transB: false, m: k, n: p, k: g.outChannels, alpha: 1,
              a: weight.data, lda: k, b: dyn, ldb: p, beta: 0, c: dxn, ldc: p)
          } else {
            T.gemm(
              transA: true, transB: false, m: k, n: p, k: g.outChannels, alpha: 1,
              a: weight.data, lda: k, b: dyn, ldb: p, beta: 0, c: dcol, ldc: p)
            col2im(dcol, g, h: h, w: w, oh: oh, ow: ow, dxn)
          }
        }
      }
    }
    // Fixed-order reduction of the shard partials.
    reduceShards(ws.dW, shards: shards, count: wc, into: dWeight.data)
    if let dBias { reduceShards(ws.db, shards: shards, count: g.outChannels, into: dBias.data) }
  }
}
