/// The anti-aliasing blur of BlurPool (Zhang 2019; Composer `blurpool`): every channel of an
/// NCHW tensor convolved with the fixed 3x3 binomial filter
/// `f = [1, 2, 1]^T [1, 2, 1] / 16` (entries sum to 1), zero padding 1, stride `s`:
///
///     y[n, c, i, j] = sum_{a, b in 0..<3} f[a, b] x[n, c, s i + a - 1, s j + b - 1]
///
/// with `x` zero outside the image, so `y` is `[N, C, (H - 1) / s + 1, (W - 1) / s + 1]`.
/// The backward pass is the transpose of that linear map:
/// `dx[n, c, p, q] = sum over (i, j, a, b) with s i + a - 1 = p, s j + b - 1 = q of f[a, b] dy[n, c, i, j]`.
/// Planes are independent, so any thread count gives the same bits.
public enum Blur {
  public static func outputShape(_ s: [Int], stride: Int) throws -> [Int] {
    guard s.count == 4, stride >= 1 else { throw EngineError("blur: expected NCHW input, got shape \(s)") }
    return [s[0], s[1], (s[2] - 1) / stride + 1, (s[3] - 1) / stride + 1]
  }

  /// The filter's 1-D factor `[1, 2, 1] / 4` at tap `a`.
  @inline(__always) private static func tap<T: Scalar>(_ a: Int) -> T {
    a == 1 ? T(0.5) : T(0.25)
  }

  /// `y = blur(x)` (see the type's comment); `y` is resized.
  @_specialize(where T == Float)
  public static func forward<T: Scalar>(x: Tensor<T>, stride s: Int, y: Tensor<T>) throws {
    let shape = try outputShape(x.shape, stride: s)
    y.resize(shape)
    let (h, w, oh, ow) = (x.shape[2], x.shape[3], shape[2], shape[3])
    let (xp, yp) = (x.data, y.data)
    let planes = x.shape[0] * x.shape[1]
    let shards = Parallel.batchShards(planes)
    Parallel.forEach(shards) { shard in
      for plane in Parallel.range(shard, of: shards, planes) {
        let src = xp + plane * h * w
        let dst = yp + plane * oh * ow
        for i in 0..<oh {
          for j in 0..<ow {
            var acc = T.zero
            for a in 0..<3 {
              let r = s * i + a - 1
              guard r >= 0, r < h else { continue }
              let row = src + r * w
              var racc = T.zero
              for b in 0..<3 {
                let c = s * j + b - 1
                guard c >= 0, c < w else { continue }
                racc += tap(b) * row[c]
              }
              acc += tap(a) * racc
            }
            dst[i * ow + j] = acc
          }
        }
      }
    }
  }

  /// `dx` (resized to `inputShape`) from `dy`: the transpose of ``forward(x:stride:y:)``.
  @_specialize(where T == Float)
  public static func backward<T: Scalar>(inputShape: [Int], dy: Tensor<T>, stride s: Int, dx: Tensor<T>) {
    dx.resize(inputShape)
    let (h, w, oh, ow) = (inputShape[2], inputShape[3], dy.shape[2], dy.shape[3])
    let (gp, dp) = (dy.data, dx.data)
    let planes = inputShape[0] * inputShape[1]
    let shards = Parallel.batchShards(planes)
    Parallel.forEach(shards) { shard in
      for plane in Parallel.range(shard, of: shards, planes) {
        let g = gp + plane * oh * ow
        let d = dp + plane * h * w
        d.update(repeating: .zero, count: h * w)
        for i in 0..<oh {
          for j in 0..<ow {
            let v = g[i * ow + j]
            for a in 0..<3 {
              let r = s * i + a - 1
              guard r >= 0, r < h else { continue }
              let va = tap(a) * v
              for b in 0..<3 {
                let c = s * j + b - 1
                guard c >= 0, c < w else { continue }
                d[r * w + c] += tap(b) * va
              }
            }
          }
        }
      }
    }
  }
}
