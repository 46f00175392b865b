/// Activation memory layouts.
///
/// `nchw` is PyTorch's default: `x[n, c, h, w]` at `((n*C + c)*H + h)*W + w`.
/// `blocked16` is oneDNN's `nChw16c`: channels in blocks of 16, the 16 channels of a block
/// innermost, `x[n, c, h, w]` at `(((n*C/16 + c/16)*H + h)*W + w)*16 + c%16`; it needs
/// `C % 16 == 0`. oneDNN's convolution kernels read and write it natively, so a chain
/// conv -> batch norm -> ReLU -> conv (-> residual add) stays blocked and skips two reorders
/// per layer. Layers that need NCHW (pooling, flatten, im2col convolution) convert on entry
/// and convert their input gradient back (``Layouts/convert(_:to:into:)``).
public enum TensorLayout: Sendable, Equatable, CustomStringConvertible {
  case nchw
  case blocked16
  public var description: String { self == .nchw ? "nchw" : "nChw16c" }
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
    precondition(
      x.shape.count == 4 && x.shape[1] % 16 == 0, "nChw16c needs 4-D input with C % 16 == 0, got \(x.shape)")
    y.resize(x.shape)
    y.layout = layout
    let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    let toBlocked = layout == .blocked16
    let shards = Parallel.batchShards(n)
    Parallel.forEach(shards) { s in
      for i in Parallel.range(s, of: shards, n) {
        for cb in 0..<(c / 16) {
          // One 16-channel block of one example: [16][HW] (nchw) <-> [HW][16] (blocked).
          let plain = (toBlocked ? x.data : y.data) + (i * c + cb * 16) * hw
          let blocked = (toBlocked ? y.data : x.data) + (i * c + cb * 16) * hw
          // 16x16 tiles (16 positions x 16 channels, 1 KiB) so reads and writes stay in L1.
          var j0 = 0
          while j0 < hw {
            let j1 = min(j0 + 16, hw)
            if toBlocked {
              for l in 0..<16 { for j in j0..<j1 { blocked[j * 16 + l] = plain[l * hw + j] } }
            } else {
              for l in 0..<16 { for j in j0..<j1 { plain[l * hw + j] = blocked[j * 16 + l] } }
            }
            j0 = j1
          }
        }
      }
    }
  }
}
