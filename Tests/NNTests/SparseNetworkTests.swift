import Datasets
import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing

/// A network with a random mask of about `density` on every prunable weight (the same
/// initialisation and mask for every call with the same arguments), on sparse kernels
/// by `policy`.
func maskedNetwork(
  _ model: String, shape: [Int], density: Double, policy: SparseKernelPolicy
) throws -> Network<Float> {
  let net: Network<Float> = try ModelZoo.make(model, inputShape: shape, classes: 10)
  net.initialize(seed: 11, weights: .kaimingNormal, batchNorm: .uniform)
  var r = RandomStream(seed: 5, purpose: "sparse-network-mask")
  for (_, p) in net.prunableParameters {
    p.mask = Tensor(p.value.array.map { _ in r.uniform() < density ? 1 : 0 }, shape: p.value.shape)
    p.applyMask()
  }
  net.sparseKernels = policy
  return net
}

/// Relative L2 distance of two tensors.
func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
  var (num, den) = (0.0, 0.0)
  for (x, y) in zip(a, b) {
    num += Double(x - y) * Double(x - y)
    den += Double(y) * Double(y)
  }
  return (num / max(den, 1e-30)).squareRoot()
}

/// A user's own prunable layer without sparse kernels: `y = x * w` per feature.
final class Scale: Module<Float> {
  let weight: Parameter<Float>
  private let output = Tensor<Float>(zeros: [0])
  init(_ features: Int) {
    weight = Parameter(shape: [features], prunable: true, fanIn: 1, fanOut: 1)
    weight.value.buffer.update(repeating: 1)
  }
  override var localParameters: [(String, Parameter<Float>)] { [("weight", weight)] }
  override func forward(_ x: Tensor<Float>) throws -> Tensor<Float> {
    output.resize(x.shape)
    for i in 0..<x.count { output[i] = x[i] * weight.value[i % weight.value.count] }
    return output
  }
}

@Suite("Sparse kernels in whole networks")
struct SparseNetworkTests {
  @Test(
    "loss and gradients on sparse kernels agree with dense-masked ones (LeNet, Conv-2, ResNet-8)",
    arguments: [
      ("mnist_lenet_300_100", [1, 28, 28], 0.05), ("cifar_conv_2", [3, 16, 16], 0.1),
      ("cifar_resnet_8", [3, 16, 16], 0.1),
    ])
  func gradients(_ a: (String, [Int], Double)) throws {
    let data = Synthetic.make(count: 12, shape: a.1, classes: 10, seed: 4)
    let x = Tensor<Float>(zeros: [0])
    let labels = data.gather(0..<12, into: x)
    let sparse = try maskedNetwork(a.0, shape: a.1, density: a.2, policy: .on)
    let dense = try maskedNetwork(a.0, shape: a.1, density: a.2, policy: .off)
    let ls = try sparse.lossAndGradients(input: x, labels: labels).loss
    let ld = try dense.lossAndGradients(input: x, labels: labels).loss
    #expect(abs(ls - ld) <= 1e-5 * abs(ld), "loss \(ls) vs \(ld)")
    // Every pruned layer really ran sparse (the three convolution forms in ResNet-8).
    let kernels = sparse.sparseKernelNames
    #expect(!kernels.isEmpty && kernels.values.allSatisfy { $0.hasPrefix("sparse") }, "\(kernels)")
    if a.0.contains("resnet") {
      #expect(Set(kernels.values) == ["sparse-csr", "sparse-csr+im2col", "sparse-csr-direct"])
    }
    for ((name, p), (_, q)) in zip(sparse.parameters, dense.parameters) {
      let masked = q.mask.map { m in (0..<q.grad.count).map { q.grad[$0] * m[$0] } } ?? q.grad.array
      #expect(relativeL2(p.grad.array, masked) < 1e-4, "\(name)")
      if let m = p.mask { for i in 0..<m.count where m[i] == 0 { #expect(p.grad[i] == 0, "\(name)[\(i)]") } }
    }
  }

  @Test(
    "feature-major activations pass from sparse to sparse, sparse to dense and back (batches 1, 13, 60)",
    arguments: [1, 13, 60])
  func featureMajorChain(batch: Int) throws {
    let data = Synthetic.make(count: batch, shape: [1, 28, 28], classes: 10, seed: 8)
    let x = Tensor<Float>(zeros: [0])
    let labels = data.gather(0..<batch, into: x)
    // on: all three layers sparse (two hand-overs). auto at 20%: all three sparse too (the
    // second and the tiny output layer get their input feature-major). auto with the
    // second layer at 50%: the first sparse, the second dense (it reads the feature-major
    // input through BLAS, ReLU fused, and hands its input gradient back feature-major),
    // the output layer dense (a batch-major input).
    for (policy, secondDensity, expected) in [
      (SparseKernelPolicy.on, nil, ["sparse-csr", "sparse-csr", "sparse-csr"]),
      (.auto, nil, batch < 16 ? ["dense", "dense", "dense"] : ["sparse-csr", "sparse-csr", "sparse-csr"]),
      (.auto, 0.5, batch < 16 ? ["dense", "dense", "dense"] : ["sparse-csr", "dense", "dense"]),
    ] {
      let dense = try maskedNetwork("mnist_lenet_300_100", shape: [1, 28, 28], density: 0.2, policy: .off)
      let net = try maskedNetwork("mnist_lenet_300_100", shape: [1, 28, 28], density: 0.2, policy: policy)
      if let d = secondDensity {
        for n in [dense, net] {
          let w = n.prunableParameters.first { $0.0 == "fc_layers.1.weight" }!.1
          var r = RandomStream(seed: 3, purpose: "second-layer-mask")
          w.mask = Tensor(w.value.array.map { _ in r.uniform() < d ? 1 : 0 }, shape: w.value.shape)
          w.applyMask()
        }
      }
      let ld = try dense.lossAndGradients(input: x, labels: labels).loss
      let ls = try net.lossAndGradients(input: x, labels: labels).loss
      let k = net.sparseKernelNames
      #expect([k["fc_layers.0"], k["fc_layers.1"], k["fc"]] == expected, "\(policy) at batch \(batch): \(k)")
      #expect(abs(ls - ld) <= 1e-5 * abs(ld), "\(policy) at batch \(batch): loss \(ls) vs \(ld)")
      for ((name, p), (_, q)) in zip(net.parameters, dense.parameters) {
        // Dense kernels leave pruned positions of the gradient to the optimizer's mask.
        func masked(_ t: Parameter<Float>) -> [Float] {
          t.mask.map { m in (0..<t.grad.count).map { t.grad[$0] * m[$0] } } ?? t.grad.array
        }
        #expect(relativeL2(masked(p), masked(q)) < 1e-4, "\(policy) at batch \(batch): \(name)")
      }
      net.setTraining(false)
      dense.setTraining(false)
      let logits = try net.forward(x)
      #expect(logits.shape == [batch, 10] && logits.layout == .nchw)
      #expect(relativeL2(logits.array, try dense.forward(x).array) < 1e-5)
      dense.setTraining(true)
    }
  }

  /// Trains `steps` steps with Adam or SGD + momentum; returns every parameter and the
  /// optimizer state (dense, as checkpoints see it).
  /// `readValues`: every parameter's `value` is read after each step, which ends the
  /// compact form (``Parameter/compactValue``) each time: the gather-update-scatter path.
  func train(
    policy: SparseKernelPolicy, sgd: Bool, steps: Int = 25, denseGradients: Bool = true,
    model: String = "mnist_lenet_80_40", shape: [Int] = [1, 12, 12], readValues: Bool = false
  ) throws -> (net: Network<Float>, state: [[Float]]) {
    let net = try maskedNetwork(model, shape: shape, density: 0.1, policy: policy)
    let data = Synthetic.make(count: 200, shape: shape, classes: 10, seed: 6)
    let opt: any Optimizer<Float> =
      sgd
      ? try SGD(net.parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 1e-3)
      : try Adam(net.parameters, learningRate: 2e-3, weightDecay: 1e-4)
    let x = Tensor<Float>(zeros: [0])
    for step in 0..<steps {
      let labels = data.gather((step * 7 % 150)..<(step * 7 % 150 + 24), into: x)
      try net.lossAndGradients(input: x, labels: labels, denseGradients: denseGradients)
      opt.step()
      if readValues { for (_, p) in net.parameters { _ = p.value } }
    }
    return (net, opt.namedState.map { $0.1.array })
  }

  @Test(
    "the compact form of trained weights: the same bits as the gather-update-scatter path; value, a new mask and a dense step write it back",
    arguments: [("mnist_lenet_80_40", [1, 12, 12]), ("cifar_conv_2", [3, 8, 8])])
  func compactForm(_ a: (String, [Int])) throws {
    for sgd in [false, true] {
      let compact = try train(policy: .on, sgd: sgd, steps: 12, model: a.0, shape: a.1)
      let pruned = compact.net.prunableParameters
      #expect(pruned.allSatisfy { $0.1.compactValue != nil }, "every pruned weight in compact form")
      // A new mask object first writes the weights back (then the plan is rebuilt).
      let (name0, p0) = pruned[0]
      p0.mask = p0.mask!.clone()
      #expect(p0.compactValue == nil, "\(name0)")
      let synced = try train(policy: .on, sgd: sgd, steps: 12, model: a.0, shape: a.1, readValues: true)
      let sameState = compact.state == synced.state
      #expect(sameState)
      for ((name, p), (_, q)) in zip(compact.net.parameters, synced.net.parameters) {
        let same = p.value.array == q.value.array
        #expect(same, "\(name)")
        #expect(p.compactValue == nil, "\(name): reading value ends the compact form")
      }
      // A dense step (policy off) reads the dense weights: it trains on the current values.
      let again = try train(policy: .on, sgd: sgd, steps: 12, model: a.0, shape: a.1)
      again.net.sparseKernels = .off
      synced.net.sparseKernels = .off
      let data = Synthetic.make(count: 24, shape: a.1, classes: 10, seed: 7)
      let x = Tensor<Float>(zeros: [0])
      let labels = data.gather(0..<24, into: x)
      let l1 = try again.net.lossAndGradients(input: x, labels: labels).loss
      let l2 = try synced.net.lossAndGradients(input: x, labels: labels).loss
      #expect(l1 == l2)
    }
  }

  @Test(
    "training on sparse kernels keeps pruned weights and state exactly zero, the same bits at 1, 2 and 3 threads",
    arguments: [false, true])
  func training(_ sgd: Bool) throws {
    let one = try withExclusiveThreads(1) { try train(policy: .on, sgd: sgd) }
    #expect(one.net.sparseKernelNames.values.allSatisfy { $0 == "sparse-csr" })
    for (name, p) in one.net.prunableParameters {
      let m = p.mask!
      for i in 0..<m.count where m[i] == 0 { #expect(p.value[i] == 0, "\(name)[\(i)] revived") }
    }
    // The optimizer state, flushed to dense, is zero at pruned positions too.
    let masks = one.net.parameters.map { $0.1.mask }
    let perParameter = one.state.count / one.net.parameters.count
    for (k, s) in one.state.enumerated() {
      guard let m = masks[k / perParameter] else { continue }
      for i in 0..<m.count where m[i] == 0 { #expect(s[i] == 0) }
    }
    let params = one.net.parameters.map { $0.1.value.array }
    for t in [2, 3] {
      let other = try withExclusiveThreads(t) { try train(policy: .on, sgd: sgd) }
      #expect(other.net.parameters.map { $0.1.value.array } == params, "\(t) threads")
      #expect(other.state == one.state, "\(t) threads")
    }
    // Dense kernels on the masked weights: the same training up to rounding.
    let dense = try train(policy: .off, sgd: sgd)
    for (k, (name, p)) in dense.net.parameters.enumerated() {
      #expect(relativeL2(params[k], p.value.array) < 1e-3, "\(name)")
    }
  }

  @Test(
    "a training step without dense gradients trains the same bits; the next default step writes them again")
  func withoutDenseGradients() throws {
    for sgd in [false, true] {
      let with = try train(policy: .on, sgd: sgd, steps: 6)
      let without = try train(policy: .on, sgd: sgd, steps: 6, denseGradients: false)
      #expect(without.net.parameters.map { $0.1.value.array } == with.net.parameters.map { $0.1.value.array })
      #expect(without.state == with.state)
      // Compact layers left their dense gradient alone; a default call fills it again.
      let data = Synthetic.make(count: 24, shape: [1, 12, 12], classes: 10, seed: 7)
      let x = Tensor<Float>(zeros: [0])
      let labels = data.gather(0..<24, into: x)
      for (_, p) in without.net.parameters { p.grad.zero() }
      try without.net.lossAndGradients(input: x, labels: labels, denseGradients: false)
      let compact = without.net.prunableParameters.filter { $0.1.updatePositions != nil }
      #expect(!compact.isEmpty && compact.allSatisfy { $0.1.grad.array.allSatisfy { $0 == 0 } })
      try without.net.lossAndGradients(input: x, labels: labels)
      try with.net.lossAndGradients(input: x, labels: labels)
      for ((name, p), (_, q)) in zip(without.net.parameters, with.net.parameters) {
        #expect(p.grad.array == q.grad.array, "\(name)")
      }
    }
  }

  @Test(
    "feature-major batches: a sparse first linear layer trains the same bits on them; other networks do not take them"
  )
  func featureMajorBatches() throws {
    let shape = [1, 12, 12]
    let data = Synthetic.make(count: 200, shape: shape, classes: 10, seed: 6)
    func run(_ featureMajor: Bool) throws -> [[Float]] {
      let net = try maskedNetwork("mnist_lenet_80_40", shape: shape, density: 0.1, policy: .auto)
      #expect(net.prefersFeatureMajorInput(batch: 24))
      let opt = try Adam(net.parameters, learningRate: 2e-3)
      let x = Tensor<Float>(zeros: [0])
      for step in 0..<8 {
        let idx = (step * 7 % 150)..<(step * 7 % 150 + 24)
        let labels = data.gather(idx, into: x, featureMajor: featureMajor)
        try net.lossAndGradients(input: x, labels: labels, denseGradients: false)
        opt.step()
        // The first layer read the batch as it came (no transpose of its own).
        let first = net.body.namedModules().compactMap { $0.1 as? Linear<Float> }.first!
        #expect(first.inputWasFeatureMajor == featureMajor)
      }
      let eval = Tensor<Float>(zeros: [0])
      let labels = data.gather(0..<13, into: eval, featureMajor: featureMajor)
      let r = try net.evaluate(input: eval, labels: labels)
      return net.parameters.map { $0.1.value.array } + [[Float(r.loss)]]
    }
    let a = try run(true)
    let b = try run(false)
    #expect(a == b)
    // Dense first layers and convolutions want batch-major batches and refuse the other.
    let dense = try maskedNetwork("mnist_lenet_80_40", shape: shape, density: 0.1, policy: .off)
    #expect(!dense.prefersFeatureMajorInput(batch: 24))
    let unpruned = try maskedNetwork("mnist_lenet_80_40", shape: shape, density: 1, policy: .auto)
    for (_, p) in unpruned.prunableParameters { p.mask = nil }
    #expect(!unpruned.prefersFeatureMajorInput(batch: 24))
    let conv = try maskedNetwork("cifar_conv_2", shape: [3, 8, 8], density: 0.1, policy: .auto)
    #expect(!conv.prefersFeatureMajorInput(batch: 24))
    let images = Synthetic.make(count: 8, shape: [3, 8, 8], classes: 10)
    let x = Tensor<Float>(zeros: [0])
    let labels = images.gather(0..<8, into: x, featureMajor: true)
    #expect(throws: EngineError.self) { try conv.evaluate(input: x, labels: labels) }
  }

  @Test("auto never picks a sparse kernel above the rule's density threshold, and follows the rule below it")
  func autoRule() throws {
    for density in [0.9, 0.5, SparseKernelRule.maxLinearDensity + 0.05, 0.3, 0.2, 0.15, 0.14, 0.05, 0.02] {
      let net = try maskedNetwork("cifar_conv_2", shape: [3, 16, 16], density: density, policy: .auto)
      let data = Synthetic.make(count: 64, shape: [3, 16, 16], classes: 10, seed: 1)
      let x = Tensor<Float>(zeros: [0])
      try net.lossAndGradients(input: x, labels: data.gather(0..<64, into: x))
      for (name, m) in net.body.namedModules() {
        if let l = m as? Linear<Float> {
          let d = Double(l.weight.mask!.array.reduce(0, +)) / Double(l.weight.value.count)
          let expected = SparseKernelRule.linear(
            outFeatures: l.outFeatures, inFeatures: l.inFeatures, density: d, batch: 64,
            featureMajorInput: l.inputWasFeatureMajor)
          #expect((l.kernelName != "dense") == expected, "\(name) at \(d)")
          if d > SparseKernelRule.maxLinearDensity { #expect(l.kernelName == "dense") }
        }
        if let c = m as? Conv2d<Float> {
          let d = Double(c.weight.mask!.array.reduce(0, +)) / Double(c.weight.value.count)
          let input = c.lastInputShape.map { (h: $0[2], w: $0[3]) }
          #expect(input?.w == 16)
          let expected = SparseKernelRule.convolution(c.geometry, density: d, batch: 64, input: input)
          #expect((c.backend is SparseConvolution) == expected, "\(name) at \(d)")
          if d > SparseKernelRule.maxConvolutionDensity { #expect(!(c.backend is SparseConvolution)) }
        }
      }
    }
  }

  @Test(
    "the direct sparse convolution applies a fused ReLU with the same bits as the two layers, at 1-3 threads")
  func fusedConvolutionReLU() throws {
    func run(fused: Bool, threads: Int) throws -> (names: [String], values: [[Float]]) {
      try withExclusiveThreads(threads) {
        let net = try maskedNetwork("cifar_conv_2", shape: [3, 16, 16], density: 0.2, policy: .on)
        net.fusesReLU = fused
        let opt = try Adam(net.parameters, learningRate: 1e-3)
        let data = Synthetic.make(count: 24, shape: [3, 16, 16], classes: 10, seed: 4)
        let x = Tensor<Float>(zeros: [0])
        for step in 0..<3 {
          let labels = data.gather((step * 8)..<(step * 8 + 8), into: x)
          try net.lossAndGradients(input: x, labels: labels)
          opt.step()
        }
        var kernels: [String] = []
        for (name, m) in net.body.namedModules() {
          if let c = m as? Conv2d<Float>, let k = c.backend as? SparseConvolution {
            kernels.append("\(name) \(k.name) fused \(k.fusedReLU)")
          }
        }
        net.setTraining(false)
        let logits = try net.forward(x).array
        return (kernels, net.parameters.map { $0.1.value.array } + [logits])
      }
    }
    let fused = try run(fused: true, threads: 2)
    let separate = try run(fused: false, threads: 2)
    // Both forms apply the ReLU themselves: the 64->64 layer runs the direct form, the
    // 3->64 layer the im2col form.
    #expect(fused.names.contains { $0.contains("sparse-csr-direct fused true") }, "\(fused.names)")
    #expect(fused.names.contains { $0.contains("sparse-csr+im2col fused true") }, "\(fused.names)")
    #expect(separate.names.allSatisfy { $0.hasSuffix("fused false") })
    #expect(fused.values == separate.values)
    // The per-slot masked-gradient buffers: the same bits at any thread count.
    for t in [1, 3] { #expect(try run(fused: true, threads: t).values == fused.values, "threads \(t)") }
  }

  @Test(
    "the convolution rule goes to 16% for Winograd layers only where all three direct kernels run 16 lanes",
    .enabled(if: Sparse.hasWideVectors, "no AVX-512 here (or under the cap): the 12% limit only"))
  func convolutionRuleByWidth() {
    let g = ConvGeometry(inChannels: 64, outChannels: 64, kernel: (3, 3), padding: (1, 1))
    func sparse(_ d: Double, _ input: (h: Int, w: Int)?) -> Bool {
      SparseKernelRule.convolution(g, density: d, batch: 128, input: input)
    }
    // 32x32 and 16x16 maps: all three kernels 16 lanes wide.
    #expect(sparse(0.15, (32, 32)) && sparse(0.15, (16, 16)) && !sparse(0.17, (32, 32)))
    // 8-wide maps, an odd number of 16-wide rows (8-lane weight gradient), no input size.
    #expect(!sparse(0.15, (8, 8)) && !sparse(0.15, (7, 16)) && !sparse(0.15, nil))
    #expect(sparse(0.11, (8, 8)) && sparse(0.11, (7, 16)) && sparse(0.11, nil))
    #expect(SparseConvolution.wideKernels(g, h: 7, w: 16) == (true, true, false))
  }

  @Test("the linear rule is never looser where the dense product runs AVX-512 kernels")
  func linearRuleByISA() {
    var strictlyTighter = 0
    for (outF, inF) in [(300, 784), (100, 300), (256, 16384), (256, 256), (4096, 4096), (10, 100)] {
      for batch in [1, 8, 60, 128, 500, 4096] {
        for density in stride(from: 0.01, through: 0.6, by: 0.01) {
          for fm in [false, true] {
            let wide = SparseKernelRule.linear(
              outFeatures: outF, inFeatures: inF, density: density, batch: batch, featureMajorInput: fm,
              avx512Dense: true)
            let narrow = SparseKernelRule.linear(
              outFeatures: outF, inFeatures: inF, density: density, batch: batch, featureMajorInput: fm,
              avx512Dense: false)
            #expect(!wide || narrow, "\(outF)x\(inF) batch \(batch) density \(density)")
            if narrow && !wide { strictlyTighter += 1 }
            if density > SparseKernelRule.maxLinearDensity { #expect(!wide && !narrow) }
          }
        }
      }
    }
    #expect(strictlyTighter > 0)
    // LeNet's 784->300 at IMP levels 5 and 6 (33%, 26%) at batch 60.
    #expect(
      !SparseKernelRule.linear(outFeatures: 300, inFeatures: 784, density: 0.33, batch: 60, avx512Dense: true)
    )
    #expect(
      SparseKernelRule.linear(outFeatures: 300, inFeatures: 784, density: 0.33, batch: 60, avx512Dense: false)
    )
    #expect(
      SparseKernelRule.linear(outFeatures: 300, inFeatures: 784, density: 0.26, batch: 60, avx512Dense: true))
  }

  @Test("auto runs small and tiny layers sparse behind a sparse layer (feature-major input) but not alone")
  func autoRuleFollowsTheInputLayout() throws {
    // LeNet-300-100 at IMP level 6's density: 784->300 sparse hands 300->100 its input
    // feature-major, so 300->100 (30,000 weights, capped at 15% alone) goes sparse too, and
    // so does the 100->10 output layer (1,000 weights: dense when alone).
    let net = try maskedNetwork("mnist_lenet_300_100", shape: [1, 28, 28], density: 0.26, policy: .auto)
    let data = Synthetic.make(count: 60, shape: [1, 28, 28], classes: 10, seed: 2)
    let x = Tensor<Float>(zeros: [0])
    try net.lossAndGradients(input: x, labels: data.gather(0..<60, into: x))
    let linears = net.body.namedModules().compactMap { $0.1 as? Linear<Float> }
    #expect(linears.map(\.kernelName) == ["sparse-csr", "sparse-csr", "sparse-csr"])
    #expect(linears.map(\.inputWasFeatureMajor) == [false, true, true])
    #expect(
      !SparseKernelRule.linear(
        outFeatures: 10, inFeatures: 100, density: 0.26, batch: 60, featureMajorInput: false))
    // The first layer dense (50%): the second sees a batch-major input and stays dense.
    let first = linears[0].weight
    var r = RandomStream(seed: 9, purpose: "dense-first-layer")
    first.mask = Tensor(first.value.array.map { _ in r.uniform() < 0.5 ? 1 : 0 }, shape: first.value.shape)
    first.applyMask()
    try net.lossAndGradients(input: x, labels: data.gather(0..<60, into: x))
    #expect(linears.map(\.kernelName) == ["dense", "dense", "dense"])
    #expect(linears.map(\.inputWasFeatureMajor) == [false, false, false])
  }

  @Test("on refuses, by name, a pruned layer kind without sparse kernels; auto keeps it dense")
  func layerWithoutSparseKernels() throws {
    let body = Sequential(named: [("flatten", Flatten()), ("scale", Scale(16)), ("fc", Linear(16, 3))])
    let net = Network(name: "custom", body: body, inputShape: [1, 4, 4], classes: 3)
    for (_, p) in net.prunableParameters {
      p.mask = Tensor((0..<p.value.count).map { Float($0 % 4 == 0 ? 1 : 0) }, shape: p.value.shape)
    }
    let x = Tensor<Float>(repeating: 1, shape: [2, 1, 4, 4])
    net.sparseKernels = .on
    #expect {
      try net.forward(x)
    } throws: { "\($0)".contains("layer scale (Scale) has no sparse kernels") }
    net.sparseKernels = .auto
    _ = try net.forward(x)
    #expect(net.sparseKernelNames == ["fc": "dense"])
  }

  @Test("off is the dense arithmetic bit for bit; a mask of the wrong shape is one clear error")
  func offAndBadMask() throws {
    let data = Synthetic.make(count: 8, shape: [1, 28, 28], classes: 10, seed: 2)
    let x = Tensor<Float>(zeros: [0])
    let labels = data.gather(0..<8, into: x)
    let off = try maskedNetwork("mnist_lenet_300_100", shape: [1, 28, 28], density: 0.05, policy: .off)
    try off.lossAndGradients(input: x, labels: labels)
    #expect(off.sparseKernelNames.values.allSatisfy { $0 == "dense" })
    let bad = try maskedNetwork("mnist_lenet_300_100", shape: [1, 28, 28], density: 0.05, policy: .on)
    bad.prunableParameters[0].1.mask = Tensor(repeating: 1, shape: [10, 10])
    #expect {
      try bad.lossAndGradients(input: x, labels: labels)
    } throws: { "\($0)".contains("does not match its weight") }
  }
}
