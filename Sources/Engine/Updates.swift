/// Optimizer update kernels (the formulas are documented on `NN.SGD` and `NN.Adam`), and
/// mask multiplication. They live here so that they are compiled specialised for `Float`
/// and `Double`.
public enum Updates {
  /// `y *= mask` element-wise.
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func multiply<T: Scalar>(_ y: Tensor<T>, by mask: Tensor<T>) {
    precondition(y.count == mask.count, "mask shape \(mask.shape) does not match \(y.shape)")
    let (yp, mp) = (y.data, mask.data)
    for i in 0..<y.count { yp[i] *= mp[i] }
  }

  /// One SGD step for one tensor; `buffer` is the momentum buffer (nil without momentum).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func sgd<T: Scalar>(
    weight: Tensor<T>, grad: Tensor<T>, buffer: Tensor<T>?, lr: T, weightDecay: T,
    momentum: T, dampening: T, nesterov: Bool, firstStep: Bool
  ) {
    let (w, g) = (weight.data, grad.data)
    let n = weight.count
    guard let buffer else {
      for i in 0..<n { w[i] -= lr * (g[i] + weightDecay * w[i]) }
      return
    }
    let b = buffer.data
    let damp = 1 - dampening
    for i in 0..<n {
      let d = g[i] + weightDecay * w[i]
      let nb = firstStep ? d : momentum * b[i] + damp * d
      b[i] = nb
      w[i] -= lr * (nesterov ? d + momentum * nb : nb)
    }
  }

  /// One Adam step for one tensor (`stepSize = lr / (1 - b1^t)`, `bc2 = sqrt(1 - b2^t)`).
  @_specialize(where T == Float)
  @_specialize(where T == Double)
  public static func adam<T: Scalar>(
    weight: Tensor<T>, grad: Tensor<T>, m: Tensor<T>, v: Tensor<T>, stepSize: T, beta1: T,
    beta2: T, eps: T, weightDecay: T, sqrtBiasCorrection2: T
  ) {
    let (w, g, mp, vp) = (weight.data, grad.data, m.data, v.data)
    for i in 0..<weight.count {
      let d = g[i] + weightDecay * w[i]
      mp[i] = beta1 * mp[i] + (1 - beta1) * d
      vp[i] = beta2 * vp[i] + (1 - beta2) * d * d
      w[i] -= stepSize * mp[i] / (vp[i].squareRoot() / sqrtBiasCorrection2 + eps)
    }
  }
}
