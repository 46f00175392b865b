import Data
import Engine
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
  /// Loss and every parameter gradient of one batch, with the given convolution policy.
  func gradients(_ model: String, shape: [Int], policy: ConvBackendPolicy) throws -> (
    Double, [[Float]], [String]
  ) {
    let net: Network<Float> = try ModelZoo.make(model, inputShape: shape, classes: 10)
    net.initialize(seed: 7, weights: .kaimingNormal, batchNorm: .uniform)
    net.convolutionPolicy = policy
    let data = Synthetic.make(count: 24, shape: shape, classes: 10, seed: 5)
    let x = Tensor<Float>(zeros: [0])
    let labels = data.gather(0..<24, into: x)
    let (loss, _, _) = try net.lossAndGradients(input: x, labels: labels)
    return (loss, net.parameters.map { $0.1.grad.array }, Array(net.convolutionBackendNames.values))
  }

  /// oneDNN (blocked activations, Winograd) against im2col + BLAS (NCHW): the same loss and
  /// gradients up to float rounding, for models that exercise every layout path: pooling
  /// and flatten after blocked convolutions (Conv-2, VGG), residual blocks with identity
  /// and projection shortcuts and global pooling (ResNet).
  @Test(
    "auto and onednn agree with im2col on loss and gradients",
    arguments: [
      ("cifar_conv_2", [3, 12, 12]), ("cifar_vgg_11", [3, 32, 32]), ("cifar_resnet_8", [3, 16, 16]),
      ("cifar_resnet_14_32", [3, 8, 8]),
    ])
  func agree(_ a: (String, [Int])) throws {
    let (refLoss, ref, refNames) = try gradients(a.0, shape: a.1, policy: .im2col)
    #expect(refNames.allSatisfy { $0 == "im2col+blas" })
    for policy in [ConvBackendPolicy.auto, .onednn] {
      let (loss, grads, names) = try gradients(a.0, shape: a.1, policy: policy)
      #if os(Linux)
        #expect(names.contains { $0.hasPrefix("onednn") }, "\(names)")
      #endif
      #expect(abs(loss - refLoss) < 1e-4 * max(1, abs(refLoss)), "\(policy) loss")
      // Relative to the tensor's largest gradient, floored at 1% of the network's: the
      // biases of convolutions followed by batch norm (VGG) have exactly zero gradient in
      // exact arithmetic, so theirs is pure rounding noise.
      let global = ref.map { $0.map { abs($0) }.max() ?? 0 }.max() ?? 1
      for (k, g) in grads.enumerated() {
        let scale = max(ref[k].map { abs($0) }.max() ?? 0, global * 1e-2)
        let err = zip(g, ref[k]).map { abs($0 - $1) }.max() ?? 0
        #expect(err / scale < 2e-3, "\(policy) \(a.0) gradient \(k): \(err / scale)")
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
    "fused batch norm + ReLU gives the same bits as the two layers",
    arguments: [("cifar_vgg_11", [3, 32, 32]), ("cifar_resnet_8", [3, 16, 16])])
  func fusion(_ a: (String, [Int])) throws {
    func run<T: Scalar>(_: T.Type, _ policy: ConvBackendPolicy, fused: Bool) throws -> [[T]] {
      let net = try ModelZoo.make(a.0, inputShape: a.1, classes: 10, as: T.self)
      net.initialize(seed: 9, weights: .kaimingNormal, batchNorm: .uniform)
      net.convolutionPolicy = policy
      net.fusesBatchNormReLU = fused
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
