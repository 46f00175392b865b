import Engine
import Families
import NN
import Testing

/// Central finite differences in Double against every layer's and network's backward pass.

func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor<Double> {
  var r = RandomStream(seed: seed, purpose: "gradtest")
  return Tensor((0..<shape.reduce(1, *)).map { _ in r.normal() }, shape: shape)
}

/// Indices to probe: all of a small tensor, an evenly spread sample of a big one.
func probes(_ n: Int, _ k: Int = 10) -> [Int] {
  n <= k ? Array(0..<n) : (0..<k).map { $0 * (n - 1) / (k - 1) }
}

func close(_ analytic: Double, _ numeric: Double) -> Bool {
  abs(analytic - numeric) <= 1e-6 + 1e-5 * max(abs(analytic), abs(numeric))
}

/// Checks `dL/dx` and `dL/dtheta` of a module for `L = sum(y * r)`.
func checkModule(_ m: Module<Double>, input x: Tensor<Double>, seed: UInt64 = 11) throws {
  let y0 = try m.forward(x)
  let r = randomTensor(y0.shape, seed: seed)
  func loss() throws -> Double {
    let y = try m.forward(x)
    var s = 0.0
    for i in 0..<y.count { s += y[i] * r[i] }
    return s
  }
  _ = try m.forward(x)
  let dx = try m.inputGradient(r).clone()
  let params = m.namedParameters()
  let grads = params.map { $0.1.grad.clone() }
  let eps = 1e-6
  for i in probes(x.count) {
    let old = x[i]
    x[i] = old + eps
    let lp = try loss()
    x[i] = old - eps
    let lm = try loss()
    x[i] = old
    let num = (lp - lm) / (2 * eps)
    #expect(close(dx[i], num), "input[\(i)]: analytic \(dx[i]) numeric \(num)")
  }
  for (k, (name, p)) in params.enumerated() {
    for i in probes(p.value.count) {
      let old = p.value[i]
      p.value[i] = old + eps
      let lp = try loss()
      p.value[i] = old - eps
      let lm = try loss()
      p.value[i] = old
      let num = (lp - lm) / (2 * eps)
      #expect(close(grads[k][i], num), "\(name)[\(i)]: analytic \(grads[k][i]) numeric \(num)")
    }
  }
}

/// Checks a whole network's cross-entropy gradients (parameters and input).
func checkNetwork(_ net: Network<Double>, batch: Int, seed: UInt64 = 3) throws {
  net.initialize(seed: seed, weights: .kaimingNormal, batchNorm: .uniform)
  let x = randomTensor([batch] + net.inputShape, seed: seed + 1)
  var r = RandomStream(seed: seed, purpose: "labels")
  let labels = (0..<batch).map { _ in Int32(r.int(below: net.classes)) }
  let res = try net.lossAndGradients(input: x, labels: labels, inputGradient: true)
  let dx = res.inputGradient!.clone()
  let grads = net.parameters.map { $0.1.grad.clone() }
  let eps = 1e-6
  func loss() throws -> Double { try net.evaluate(input: x, labels: labels).loss }
  var checked = 0
  for (k, (name, p)) in net.parameters.enumerated() {
    for i in probes(p.value.count, 6) {
      let old = p.value[i]
      p.value[i] = old + eps
      let lp = try loss()
      p.value[i] = old - eps
      let lm = try loss()
      p.value[i] = old
      let num = (lp - lm) / (2 * eps)
      #expect(close(grads[k][i], num), "\(net.name) \(name)[\(i)]: analytic \(grads[k][i]) numeric \(num)")
      checked += 1
    }
  }
  for i in probes(x.count) {
    let old = x[i]
    x[i] = old + eps
    let lp = try loss()
    x[i] = old - eps
    let lm = try loss()
    x[i] = old
    let num = (lp - lm) / (2 * eps)
    #expect(close(dx[i], num), "\(net.name) input[\(i)]: analytic \(dx[i]) numeric \(num)")
  }
  #expect(checked > 0)
}

@Suite("Gradients against central finite differences (Float64)")
struct GradientTests {
  @Test("linear") func linear() throws {
    let l = Linear<Double>(7, 5)
    l.weight.value.copy(from: randomTensor([5, 7], seed: 1))
    l.bias!.value.copy(from: randomTensor([5], seed: 2))
    try checkModule(l, input: randomTensor([4, 7], seed: 3))
  }

  @Test(
    "convolution",
    arguments: [
      (1, 1, 0, true), (3, 1, 1, true), (3, 2, 1, false), (1, 2, 0, false), (5, 2, 2, true), (2, 2, 0, true),
    ])
  func conv(_ a: (Int, Int, Int, Bool)) throws {
    let (k, s, p, bias) = a
    let c = Conv2d<Double>(3, 4, kernelSize: k, stride: s, padding: p, bias: bias)
    c.weight.value.copy(from: randomTensor(c.weight.value.shape, seed: 4))
    if let b = c.bias { b.value.copy(from: randomTensor([4], seed: 5)) }
    try checkModule(c, input: randomTensor([2, 3, 7, 6], seed: 6))
    try checkModule(c, input: randomTensor([1, 3, 5, 8], seed: 7))
  }

  @Test("batch norm in training and evaluation mode") func batchNorm() throws {
    let bn = BatchNorm<Double>(3)
    bn.weight.value.copy(from: randomTensor([3], seed: 8))
    bn.bias.value.copy(from: randomTensor([3], seed: 9))
    try checkModule(bn, input: randomTensor([4, 3, 3, 2], seed: 10))
    bn.setTraining(false)
    bn.runningVar.buffer.update(repeating: 1.7)
    try checkModule(bn, input: randomTensor([2, 3, 2, 2], seed: 11))
  }

  @Test("pooling, ReLU, flatten") func simpleLayers() throws {
    try checkModule(MaxPool2d<Double>(2), input: randomTensor([2, 2, 6, 5], seed: 12))
    try checkModule(MaxPool2d<Double>(3, stride: 2, padding: 1), input: randomTensor([1, 2, 7, 7], seed: 13))
    try checkModule(AvgPool2d<Double>(3, stride: 2, padding: 1), input: randomTensor([2, 2, 7, 6], seed: 14))
    try checkModule(GlobalAvgPool2d<Double>(), input: randomTensor([2, 3, 4, 5], seed: 15))
    try checkModule(ReLU<Double>(), input: randomTensor([3, 17], seed: 16))
    try checkModule(Flatten<Double>(), input: randomTensor([2, 3, 2, 2], seed: 17))
  }

  @Test("residual blocks (identity and projection shortcut)") func residual() throws {
    for (cin, cout, down) in [(4, 4, false), (3, 6, true)] {
      let b = BasicBlock<Double>(cin, cout, downsample: down)
      for (i, (_, p)) in b.namedParameters().enumerated() {
        p.value.copy(from: randomTensor(p.value.shape, seed: 20 + UInt64(i)))
      }
      try checkModule(b, input: randomTensor([3, cin, 6, 6], seed: 30))
    }
  }

  @Test("whole networks: LeNet, Conv-2, a small ResNet") func networks() throws {
    try checkNetwork(
      try ModelZoo.make("mnist_lenet_30_20", inputShape: [1, 6, 5], classes: 4, as: Double.self), batch: 5)
    try checkNetwork(
      try ModelZoo.make("cifar_conv_2", inputShape: [3, 6, 6], classes: 3, as: Double.self), batch: 3)
    try checkNetwork(
      try ModelZoo.make("cifar_resnet_8_4", inputShape: [3, 8, 8], classes: 3, as: Double.self), batch: 4)
  }

  @Test("SynFlow gradients: abs weights, all-ones input, R = sum of outputs") func synflow() throws {
    let net: Network<Double> = try ModelZoo.make(
      "mnist_lenet_5_4", inputShape: [1, 2, 3], classes: 3, as: Double.self)
    net.initialize(seed: 2, weights: .kaimingNormal)
    let before = net.parameters.map { $0.1.value.array }
    let r = try net.synflowGradients()
    // Restored.
    #expect(net.parameters.map { $0.1.value.array } == before)
    #expect(r > 0)
    // Numeric check of dR/dw at |w| for the output weight.
    let fc = net.parameter("fc.weight")!
    let g = fc.grad.clone()
    for (_, p) in net.parameters { for i in 0..<p.value.count { p.value[i] = abs(p.value[i]) } }
    let ones = Tensor<Double>(repeating: 1, shape: [1, 1, 2, 3])
    net.setTraining(false)
    func R() throws -> Double { try net.forward(ones).array.reduce(0, +) }
    for i in probes(fc.value.count) {
      let old = fc.value[i]
      fc.value[i] = old + 1e-6
      let lp = try R()
      fc.value[i] = old - 1e-6
      let lm = try R()
      fc.value[i] = old
      #expect(close(g[i], (lp - lm) / 2e-6))
    }
  }

  @Test("gradient at perturbed weights restores the weights") func perturbed() throws {
    let net: Network<Double> = try ModelZoo.make(
      "mnist_lenet_5", inputShape: [1, 2, 2], classes: 2, as: Double.self)
    net.initialize(seed: 4, weights: .glorotNormal)
    let x = randomTensor([3, 1, 2, 2], seed: 5)
    let before = net.parameters.map { $0.1.value.array }
    let dir = net.parameters.map { Optional($0.1.value.clone()) }
    let lossAt = try net.withPerturbedParameters(direction: dir, scale: 1) {
      try net.evaluate(input: x, labels: [0, 1, 1]).loss
    }
    #expect(net.parameters.map { $0.1.value.array } == before)
    // theta + 1 * theta = 2 theta: compare with doubling by hand.
    for (_, p) in net.parameters { for i in 0..<p.value.count { p.value[i] *= 2 } }
    #expect(abs(try net.evaluate(input: x, labels: [0, 1, 1]).loss - lossAt) < 1e-12)
  }
}
