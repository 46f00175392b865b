import Engine
import Foundation

/// Squeeze-and-excitation (Hu et al. 2018; Composer's `SqueezeExcite2d`) on a convolution's
/// output `x` `[N, C, H, W]`, with `h` latent channels and no biases:
///
///     s = mean_{H,W}(x)                 [N, C]
///     z = relu(s W1^T)                  [N, h]     W1: [h, C]  (`fc1.weight`)
///     a = sigmoid(z W2^T)               [N, C]     W2: [C, h]  (`fc2.weight`)
///     y = x * a[n, c]                   [N, C, H, W]
///
/// Backward: `da = sum_{H,W} dy x`, `dx = dy a + (dz-chain to s) / (H W)`, with
/// `dpre2 = da a (1 - a)`, `dW2 = dpre2^T z`, `dz = dpre2 W2`, `dpre1 = dz [z > 0]`,
/// `dW1 = dpre1^T s`, `ds = dpre1 W1`. Its weights are not prunable: they gate channels
/// rather than connect units. Reads any layout (blocked input is converted) and hands its
/// gradient back in that layout. ``Conv2d/squeezeExcite`` holds one (the `squeeze_excite`
/// surgery), named `<conv>.se.fc1.weight` and `<conv>.se.fc2.weight`.
public final class SqueezeExcite2d<T: Scalar>: Module<T> {
  public let fc1: Parameter<T>
  public let fc2: Parameter<T>
  public let channels: Int
  public let latent: Int
  private let layout = LayoutAdapter<T>()
  private var x = Tensor<T>(zeros: [0])
  private let output = Tensor<T>(zeros: [0])
  private let gradient = Tensor<T>(zeros: [0])
  private let scratch = Tensor<T>(zeros: [0])
  private var s: [Double] = []
  private var z: [Double] = []
  private var a: [Double] = []

  public init(channels: Int, latent: Int) {
    (self.channels, self.latent) = (channels, latent)
    fc1 = Parameter(shape: [latent, channels], prunable: false, fanIn: channels, fanOut: latent)
    fc2 = Parameter(shape: [channels, latent], prunable: false, fanIn: latent, fanOut: channels)
  }
  public override var localParameters: [(String, Parameter<T>)] { [("fc1.weight", fc1), ("fc2.weight", fc2)] }

  @_specialize(where T == Float)
  public override func forward(_ input: Tensor<T>) throws -> Tensor<T> {
    x = layout.input(input)
    let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    guard c == channels else { throw EngineError("squeeze-excite: expected \(channels) channels, got \(x.shape)") }
    let (w1, w2) = (fc1.value, fc2.value)
    s = Array(repeating: 0, count: n * c)
    z = Array(repeating: 0, count: n * latent)
    a = Array(repeating: 0, count: n * c)
    for i in 0..<n * c {
      var sum = 0.0
      let p = x.data + i * hw
      for j in 0..<hw { sum += Double(p[j]) }
      s[i] = sum / Double(hw)
    }
    for e in 0..<n {
      for k in 0..<latent {
        var v = 0.0
        for ch in 0..<c { v += s[e * c + ch] * Double(w1[k * c + ch]) }
        z[e * latent + k] = max(v, 0)
      }
      for ch in 0..<c {
        var v = 0.0
        for k in 0..<latent { v += z[e * latent + k] * Double(w2[ch * latent + k]) }
        a[e * c + ch] = 1 / (1 + Foundation.exp(-v))
      }
    }
    output.resize(x.shape)
    for i in 0..<n * c {
      let (p, q, g) = (x.data + i * hw, output.data + i * hw, T(a[i]))
      for j in 0..<hw { q[j] = p[j] * g }
    }
    return output
  }

  @_specialize(where T == Float)
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    var d = dy
    if dy.layout != .nchw {
      Layouts.convert(dy, to: .nchw, into: scratch)
      d = scratch
    }
    let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    let (w1, w2) = (fc1.value, fc2.value)
    var dpre2 = Array(repeating: 0.0, count: n * c)
    for i in 0..<n * c {
      var da = 0.0
      let (p, g) = (x.data + i * hw, d.data + i * hw)
      for j in 0..<hw { da += Double(g[j]) * Double(p[j]) }
      dpre2[i] = da * a[i] * (1 - a[i])
    }
    var ds = Array(repeating: 0.0, count: n * c)
    var g1 = Array(repeating: 0.0, count: latent * c)
    var g2 = Array(repeating: 0.0, count: c * latent)
    for e in 0..<n {
      var dpre1 = Array(repeating: 0.0, count: latent)
      for k in 0..<latent {
        var dz = 0.0
        for ch in 0..<c {
          g2[ch * latent + k] += dpre2[e * c + ch] * z[e * latent + k]
          dz += dpre2[e * c + ch] * Double(w2[ch * latent + k])
        }
        dpre1[k] = z[e * latent + k] > 0 ? dz : 0
      }
      for k in 0..<latent {
        for ch in 0..<c {
          g1[k * c + ch] += dpre1[k] * s[e * c + ch]
          ds[e * c + ch] += dpre1[k] * Double(w1[k * c + ch])
        }
      }
    }
    for i in 0..<latent * c { fc1.grad[i] = T(g1[i]) }
    for i in 0..<c * latent { fc2.grad[i] = T(g2[i]) }
    guard needInputGradient else { return nil }
    gradient.resize(x.shape)
    for i in 0..<n * c {
      let (g, q) = (d.data + i * hw, gradient.data + i * hw)
      let (gate, spread) = (T(a[i]), T(ds[i] / Double(hw)))
      for j in 0..<hw { q[j] = g[j] * gate + spread }
    }
    return layout.gradient(gradient)
  }
}

