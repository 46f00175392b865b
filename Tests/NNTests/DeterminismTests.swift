import Data
import Engine
import NN
import Testing

/// Trains a few steps and returns every parameter and buffer, bit for bit.
func trainFewSteps(_ model: String, shape: [Int], threads: Int, sgd: Bool) throws -> [[Float]] {
  Parallel.threads = threads
  defer { Parallel.threads = 1 }
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
