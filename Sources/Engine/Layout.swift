/// Activation memory layouts.
///
/// `nchw` is PyTorch's default: `x[n, c, h, w]` at `((n*C + c)*H + h)*W + w`.
/// `blocked16` is oneDNN's `nChw16c` (its AVX-512 kernels) and `blocked8` its `nChw8c` (its
/// AVX2 kernels): channels in blocks of B, the B channels of a block innermost,
/// `x[n, c, h, w]` at `(((n*C/B + c/B)*H + h)*W + w)*B + c%B`; they need `C % B == 0`.
/// oneDNN's convolution kernels read and write them natively, so a chain conv -> batch norm
/// -> ReLU -> conv (-> residual add, max pooling) stays blocked and skips two reorders per
/// layer. Layers that need NCHW (flatten, average pooling, im2col convolution) convert on
/// entry and convert their input gradient back (``Layouts/convert(_:to:into:)``).
///
/// `featureMajor(batch:)` is a 2-D activation `[N, F]` stored transposed, as the sparse
/// linear kernels compute it: the tensor's shape is `[F, L]`, `x[n, f]` at `f*L + n`, with
/// `L` = ``Sparse/paddedBatch(_:)`` of N and zeros in lanes `N ..< L`. A sparse linear layer
/// followed (through a fused ReLU) by another linear layer writes it and the next one reads
/// it, so a chain of pruned layers skips two transposes per layer each way; a layer that
/// needs `[N, F]` converts on entry (``Layouts/convert(_:to:into:)``).
public enum TensorLayout: Sendable, Equatable, Hashable, CustomStringConvertible {
  case nchw
  case blocked16
  case blocked8
  case featureMajor(batch: Int)
  /// Channels per block (1 for NCHW and feature-major).
  public var block: Int {
    switch self {
    case .nchw, .featureMajor: 1
    case .blocked16: 16
    case .blocked8: 8
    }
  }
  public var isBlocked: Bool { block > 1 }
  /// The batch size of a ``featureMajor(batch:)`` activation, nil for other layouts.
  public var featureMajorBatch: Int? {
    if case .featureMajor(let n) = self { n } else { nil }
  }
  public var description: String {
    switch self {
    case .nchw: "nchw"
    case .blocked16: "nChw16c"
    case .blocked8: "nChw8c"
    case .featureMajor(let n): "feature-major (batch \(n))"
    }
  }
}

public enum Layouts {
  /// Copies `x` into `y` in `layout` (a plain copy when `x` already has it). Sharded by
  /// example; a pure permutation, so the values are exact.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  @inline(never)
  public static func convert<T: Scalar>(_ x: Tensor<T>, to layout: TensorLayout, into y: Tensor<T>) {
    precondition(x !== y, "layout conversion in place")
    if x.layout == layout {
      y.copy(from: x)
      return
    }
    if let n = x.layout.featureMajorBatch {  // [F, L] -> [N, F]
      precondition(layout == .nchw, "feature-major activations convert to [N, F] only")
      y.resize([n, x.shape[0]])
      transpose(x.data, rows: x.shape[0], cols: n, sourceStride: x.shape[1], into: y.data, ld: x.shape[0])
      return
    }
    if let n = layout.featureMajorBatch {  // [N, F] -> [F, L]
      precondition(x.shape.count == 2 && x.shape[0] == n, "feature-major needs [\(n), F], got \(x.shape)")
      let ld = Sparse.paddedBatch(n)
      y.resize([x.shape[1], ld])
      transpose(x.data, rows: n, cols: x.shape[1], sourceStride: x.shape[1], into: y.data, ld: ld)
      y.layout = layout
      return
    }
    if x.layout.isBlocked && layout.isBlocked {  // one block size to another, through NCHW
      let plain = Tensor<T>(zeros: [0])
      convert(x, to: .nchw, into: plain)
      convert(plain, to: layout, into: y)
      return
    }
    let toBlocked = layout.isBlocked
    let b = toBlocked ? layout.block : x.layout.block
    precondition(
      x.shape.count == 4 && x.shape[1] % b == 0,
      "\(toBlocked ? layout : x.layout) needs 4-D input with C % \(b) == 0, got \(x.shape)")
    y.resize(x.shape)
    y.layout = layout
    let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    let shards = Parallel.batchShards(n)
    Parallel.forEach(shards) { s in
      for i in Parallel.range(s, of: shards, n) {
        for cb in 0..<(c / b) {
          // One B-channel block of one example: [B][HW] (nchw) <-> [HW][B] (blocked).
          let plain = (toBlocked ? x.data : y.data) + (i * c + cb * b) * hw
          let blocked = (toBlocked ? y.data : x.data) + (i * c + cb * b) * hw
          // Tiles of 16 positions x B channels (at most 1 KiB) so reads and writes stay in L1.
          var j0 = 0
          while j0 < hw {
            let j1 = min(j0 + 16, hw)
            if toBlocked {
              for l in 0..<b { for j in j0..<j1 { blocked[j * b + l] = plain[l * hw + j] } }
            } else {
              for l in 0..<b { for j in j0..<j1 { plain[l * hw + j] = blocked[j * b + l] } }
            }
            j0 = j1
          }
        }
      }
    }
  }

  /// ``Sparse/transpose(_:rows:cols:sourceStride:into:ld:relu:mask:)`` behind the generic `T`.
  private static func transpose<T: Scalar>(
    _ src: UnsafeMutablePointer<T>, rows: Int, cols: Int, sourceStride: Int,
    into dst: UnsafeMutablePointer<T>,
    ld: Int
  ) {
    // Only sparse kernels write this layout, and they are Float only.
    precondition(T.self == Float.self, "feature-major activations are Float only")
    Sparse.transpose(
      UnsafeRawPointer(src).assumingMemoryBound(to: Float.self), rows: rows, cols: cols,
      sourceStride: sourceStride, into: UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self),
      ld: ld)
  }
}
