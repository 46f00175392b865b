import Engine

/// Weight initialisers (PyTorch's `torch.nn.init` formulas):
/// - `kaimingNormal`: `N(0, 2 / fan_in)`; `kaimingUniform`: `U(-b, b)`, `b = sqrt(6 / fan_in)`
/// - `glorotNormal`: `N(0, 2 / (fan_in + fan_out))`; `glorotUniform`: `b = sqrt(6 / (fan_in + fan_out))`
/// Biases of linear/convolution layers get PyTorch's default `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
/// Batch norm: weight ones or `U[0, 1)` (OpenLTH's ResNet/VGG recipe), bias zeros.
public enum Initializer: String, CaseIterable, Sendable, Codable {
  case kaimingNormal = "kaiming_normal"
  case kaimingUniform = "kaiming_uniform"
  case glorotNormal = "glorot_normal"
  case glorotUniform = "glorot_uniform"

  /// Fills a prunable weight from `stream`.
  public func fill<T: Scalar>(_ p: Parameter<T>, _ stream: inout RandomStream) {
    let fanIn = Double(max(p.fanIn, 1))
    let fanOut = Double(max(p.fanOut, 1))
    let v = p.value
    switch self {
    case .kaimingNormal:
      let std = (2.0 / fanIn).squareRoot()
      for i in 0..<v.count { v[i] = T(stream.normal() * std) }
    case .glorotNormal:
      let std = (2.0 / (fanIn + fanOut)).squareRoot()
      for i in 0..<v.count { v[i] = T(stream.normal() * std) }
    case .kaimingUniform:
      let b = (6.0 / fanIn).squareRoot()
      for i in 0..<v.count { v[i] = T(stream.uniform(-b, b)) }
    case .glorotUniform:
      let b = (6.0 / (fanIn + fanOut)).squareRoot()
      for i in 0..<v.count { v[i] = T(stream.uniform(-b, b)) }
    }
  }
}

/// How batch-norm weights start.
public enum BatchNormInit: String, CaseIterable, Sendable, Codable {
  case ones
  case uniform
}

extension Network {
  /// Initialises every parameter from `(seed, "init", parameter index)`: prunable weights
  /// with `weights`, biases with PyTorch's default, batch norm with `batchNorm`/zeros.
  /// Buffers are reset (running mean 0, running variance 1). Independent of threads.
  public func initialize(seed: UInt64, weights: Initializer, batchNorm: BatchNormInit = .ones) {
    for (index, (name, p)) in parameters.enumerated() {
      var stream = RandomStream(seed: seed, purpose: "init", index: UInt64(index))
      let v = p.value
      if p.isPrunable {
        weights.fill(p, &stream)
      } else if batchNormParameterNames.contains(name) {
        if name.hasSuffix(".weight") {
          for i in 0..<v.count { v[i] = batchNorm == .ones ? 1 : T(stream.uniform()) }
        } else {
          v.zero()
        }
      } else {
        let b = 1.0 / Double(max(p.fanIn, 1)).squareRoot()
        for i in 0..<v.count { v[i] = T(stream.uniform(-b, b)) }
      }
      p.applyMask()
    }
    for (name, b) in buffers {
      b.buffer.update(repeating: name.hasSuffix("running_var") ? 1 : 0)
    }
  }
}
