import Datasets
import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing

/// Trains a few steps and returns every parameter and buffer, bit for bit.
func trainFewSteps(_ model: String, shape: [Int], threads: Int, sgd: Bool) throws -> [[Float]] {
  try withExclusiveThreads(threads) { try trainFewSteps(model, shape: shape, sgd: sgd) }
}

func trainFewSteps(_ model: String, shape: [Int], sgd: Bool) throws -> [[Float]] {
  let net: Network<Float> = try ModelZoo.make(model, inputShape: shape, classes: 10)
  net.initialize(seed: 42, weights: .kaimingNormal, batchNorm: .uniform)
  let data = Synthetic.make(count: 60, shape: shape, classes: 10, seed: 3)
  let opt: any Optimizer =
    sgd
    ? try SGD(net.parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 1e-4)
    : try Adam(net.parameters, learningRate: 1e-3)
  let x = Tensor<Float>(zeros: [0])
  for step in 0..<3 {
    let labels = data.gather((step * 13)..<(step * 13 + 20), into: x)
    try net.lossAndGradients(input: x, labels: labels)
    opt.step()
  }
  return net.parameters.map { $0.1.value.array } + net.buffers.map { $0.1.array }
}

@Suite("Determinism", .serialized)
struct DeterminismTests {
  @Test(
    "the same seed gives bit-identical parameters at 1, 2 and 3 threads",
    arguments: [
      ("mnist_lenet_300_100", [1, 28, 28], false), ("cifar_conv_2", [3, 12, 12], false),
      ("cifar_resnet_8", [3, 16, 16], true),
    ])
  func threads(_ a: (String, [Int], Bool)) throws {
    let one = try trainFewSteps(a.0, shape: a.1, threads: 1, sgd: a.2)
    let again = try trainFewSteps(a.0, shape: a.1, threads: 1, sgd: a.2)
    #expect(one == again)
    for t in [2, 3] {
      #expect(one == (try trainFewSteps(a.0, shape: a.1, threads: t, sgd: a.2)), "threads \(t)")
    }
  }
}

@Suite("Convolution backends in whole networks")
struct BackendNetworkTests {
  /// Loss and every parameter gradient (as Double) of one batch, computed in `T` with the
  /// given convolution policy, from the same Float initialisation whatever `T` is.
  func gradients<T: Scalar>(
    _ model: String, shape: [Int], policy: ConvBackendPolicy, as _: T.Type = Float.self
  ) throws -> (
    loss: Double, grads: [(String, [Double])], backends: [String], net: Network<T>, input: Tensor<Float>
  ) {
    let initial: Network<Float> = try ModelZoo.make(model, inputShape: shape, classes: 10)
    initial.initialize(seed: 7, weights: .kaimingNormal, batchNorm: .uniform)
    let net = try ModelZoo.make(model, inputShape: shape, classes: 10, as: T.self)
    for ((_, p), (_, q)) in zip(net.parameters, initial.parameters) {
      p.value.copy(from: Tensor<T>(converting: q.value))
    }
    net.convolutionPolicy = policy
    let data = Synthetic.make(count: 24, shape: shape, classes: 10, seed: 5)
    let xf = Tensor<Float>(zeros: [0])
    let labels = data.gather(0..<24, into: xf)
    let (loss, _, _) = try net.lossAndGradients(input: Tensor<T>(converting: xf), labels: labels)
    let grads = net.parameters.map { ($0.0, $0.1.grad.array.map { Double($0) }) }
    return (loss, grads, Array(net.convolutionBackendNames.values), net, xf)
  }

  static func norm(_ v: [Double]) -> Double { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }

  /// Rounding-driven decision flips of a Float network against its Float64 twin, for a
  /// flat (Sequential) body: ReLU outputs positive on one side only, and 2x2 max-pool
  /// windows whose first maximum is a different element. Returns the index (in the body)
  /// of the deepest flipped layer, the flip count, and the largest exact magnitude at a flip
  /// relative to the layer's scale (how close to the decision boundary it was).
  func flips(_ fl: Network<Float>, _ ex: Network<Double>, input: Tensor<Float>) throws -> (
    deepest: Int, count: Int, margin: Double
  ) {
    guard let fb = fl.body as? Sequential<Float>, let eb = ex.body as? Sequential<Double> else {
      return (-1, 0, 0)
    }
    var hf = input
    var he = Tensor<Double>(converting: input)
    var (deepest, count, margin) = (-1, 0, 0.0)
    for (k, ((_, lf), (_, le))) in zip(fb.layers, eb.layers).enumerated() {
      let inF = Tensor<Float>(zeros: [0])
      if hf.shape.count == 4 { Layouts.convert(hf, to: .nchw, into: inF) } else { inF.copy(from: hf) }
      let inE = he.array
      hf = try lf.forward(hf)
      he = try le.forward(he)
      let outF = Tensor<Float>(zeros: [0])
      if hf.shape.count == 4 { Layouts.convert(hf, to: .nchw, into: outF) } else { outF.copy(from: hf) }
      let scale = he.array.map { abs($0) }.max() ?? 1
      if lf is ReLU<Float> {
        for (a, b) in zip(outF.array, he.array) where (a > 0) != (b > 0) {
          (deepest, count, margin) = (k, count + 1, max(margin, max(Double(abs(a)), abs(b)) / scale))
        }
      }
      if let p = lf as? MaxPool2d<Float>, p.geometry.kernel == 2, p.geometry.stride == 2,
        inF.shape.count == 4
      {
        let (n, c, h, w) = (inF.shape[0], inF.shape[1], inF.shape[2], inF.shape[3])
        let xf = inF.array
        for plane in 0..<(n * c) {
          for i in stride(from: 0, to: h - 1, by: 2) {
            for j in stride(from: 0, to: w - 1, by: 2) {
              let idx = [0, 1, w, w + 1].map { plane * h * w + i * w + j + $0 }
              let af = idx.max { xf[$0] < xf[$1] || (xf[$0] == xf[$1] && $0 > $1) }!
              let ae = idx.max { inE[$0] < inE[$1] || (inE[$0] == inE[$1] && $0 > $1) }!
              if af != ae {
                (deepest, count) = (k, count + 1)
                margin = max(margin, abs(inE[af] - inE[ae]) / scale)
              }
            }
          }
        }
      }
    }
    return (deepest, count, margin)
  }

  /// Each Float backend against the same network and batch computed in Float64 (im2col),
  /// every gradient tensor relative to its own L2 norm: this says which side is wrong when
  /// two Float backends disagree.
  /// - Tensors whose exact gradient is zero (biases of convolutions followed by batch norm,
  ///   which removes any per-channel constant) must have a Float gradient that is rounding
  ///   noise, tiny against the whole gradient.
  /// - A ReLU or max-pool decision that rounding flips (a pre-activation within ~1e-7 of
  ///   zero, a near-tie in a pooling window) legitimately changes the gradient of every
  ///   layer before it. Flips are counted and must sit at the decision boundary; layers after
  ///   the deepest flip must match tightly, layers before it loosely.
  /// Set LTH_PRINT_GRADIENT_ERRORS=1 to print the table.
  @Test(
    "every Float backend agrees with Float64 on every gradient tensor",
    arguments: [
      ("cifar_conv_2", [3, 12, 12]), ("cifar_vgg_11", [3, 32, 32]), ("cifar_resnet_8", [3, 16, 16]),
      ("cifar_resnet_14_32", [3, 8, 8]),
    ])
  func agree(_ a: (String, [Int])) throws {
    let exact = try gradients(a.0, shape: a.1, policy: .im2col, as: Double.self)
    let verbose = ProcessInfo.processInfo.environment["LTH_PRINT_GRADIENT_ERRORS"] != nil
    let total = Self.norm(exact.grads.flatMap { $0.1 })
    for policy in [ConvBackendPolicy.im2col, .auto, .onednn] {
      let r = try gradients(a.0, shape: a.1, policy: policy)
      #if os(Linux)
        if policy != .im2col { #expect(r.backends.contains { $0.hasPrefix("onednn") }, "\(r.backends)") }
      #endif
      #expect(abs(r.loss - exact.loss) < 1e-5 * max(1, abs(exact.loss)), "\(policy) loss")
      let f = try flips(r.net, exact.net, input: r.input)
      #expect(f.margin < 1e-6, "\(policy) \(a.0): a flipped decision \(f.margin) from the boundary")
      #expect(f.count <= 4, "\(policy) \(a.0): \(f.count) flipped decisions")
      let layers = (r.net.body as? Sequential<Float>)?.layers.map(\.0) ?? []
      if verbose {
        print("\(a.0) \(policy) on \(Convolution.isa): \(f.count) flips, deepest at layer \(f.deepest)")
      }
      for (k, (name, g)) in r.grads.enumerated() {
        let ref = exact.grads[k].1
        let refNorm = Self.norm(ref)
        let err = Self.norm(zip(g, ref).map { $0 - $1 })
        // Position of the parameter's layer in a flat body (-1 if unknown: ResNets).
        let layer = layers.firstIndex { name.hasPrefix($0 + ".") } ?? -1
        let upstreamOfFlip = f.count > 0 && layer <= f.deepest
        if refNorm < 1e-9 * total {
          if verbose { print("  \(name): exact 0, Float norm \(err / total) of the total") }
          #expect(err < 1e-5 * total, "\(policy) \(a.0) \(name): \(err / total) of the total gradient norm")
        } else {
          let bound = upstreamOfFlip ? 5e-2 : 1e-4
          if verbose {
            print("  \(name): relative L2 error \(err / refNorm)\(upstreamOfFlip ? " (before a flip)" : "")")
          }
          #expect(err / refNorm < bound, "\(policy) \(a.0) \(name): relative L2 error \(err / refNorm)")
        }
      }
    }
  }

  @Test("SynFlow (evaluation-mode backward, batch of one) agrees across backends")
  func synflow() throws {
    var results: [(Double, [[Float]])] = []
    for policy in [ConvBackendPolicy.im2col, .auto] {
      let net: Network<Float> = try ModelZoo.make("cifar_resnet_8", inputShape: [3, 16, 16], classes: 10)
      net.initialize(seed: 3, weights: .kaimingNormal, batchNorm: .uniform)
      net.convolutionPolicy = policy
      let r = try net.synflowGradients()
      results.append((r, net.parameters.map { $0.1.grad.array }))
    }
    let (r0, g0) = results[0]
    let (r1, g1) = results[1]
    #expect(abs(r1 - r0) < 1e-4 * abs(r0))
    for k in g0.indices {
      let scale = max(g0[k].map { abs($0) }.max() ?? 0, 1e-30)
      let err = zip(g0[k], g1[k]).map { abs($0 - $1) }.max() ?? 0
      #expect(err / scale < 1e-3, "parameter \(k): \(err / scale)")
    }
  }

  @Test(
    "fused batch norm, linear or convolution + ReLU gives the same bits as the two layers",
    arguments: [
      ("cifar_vgg_11", [3, 32, 32]), ("cifar_resnet_8", [3, 16, 16]), ("mnist_lenet_300_100", [1, 28, 28]),
      ("cifar_conv_2", [3, 16, 16]),
    ])
  func fusion(_ a: (String, [Int])) throws {
    func run<T: Scalar>(_: T.Type, _ policy: ConvBackendPolicy, fused: Bool) throws -> [[T]] {
      let net = try ModelZoo.make(a.0, inputShape: a.1, classes: 10, as: T.self)
      net.initialize(seed: 9, weights: .kaimingNormal, batchNorm: .uniform)
      net.convolutionPolicy = policy
      net.fusesReLU = fused
      let opt = try SGD(net.parameters, learningRate: 0.05, momentum: 0.9)
      let data = Synthetic.make(count: 20, shape: a.1, classes: 10, seed: 2)
      let xf = Tensor<Float>(zeros: [0])
      var x = Tensor<T>(zeros: [0])
      for step in 0..<2 {
        let labels = data.gather((step * 10)..<(step * 10 + 10), into: xf)
        x = Tensor<T>(converting: xf)
        try net.lossAndGradients(input: x, labels: labels)
        opt.step()
      }
      net.setTraining(false)
      let logits = try net.forward(x).array
      return net.parameters.map { $0.1.value.array } + net.buffers.map { $0.1.array } + [logits]
    }
    for policy in [ConvBackendPolicy.auto, .im2col] {
      #expect(try run(Float.self, policy, fused: true) == run(Float.self, policy, fused: false), "\(policy)")
    }
    #expect(try run(Double.self, .im2col, fused: true) == run(Double.self, .im2col, fused: false))
  }
}
