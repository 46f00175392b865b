import Engine
import Foundation
import Families
import NN
import Testing

/// The layer-level forms of the speed-up methods' surgery: BlurPool's filter, stochastic
/// depth's dropped blocks, ghost batch norm and layer freezing's shortened backward pass,
/// each against a naive reference and central finite differences.
@Suite("Speed-up surgery on layers")
struct SurgeryLayerTests {
  /// The blur by its definition: a 3x3 filter `[1,2,1]^T[1,2,1]/16` over a zero-padded image.
  static func naiveBlur(_ x: Tensor<Double>, stride s: Int) -> Tensor<Double> {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (oh, ow) = ((h - 1) / s + 1, (w - 1) / s + 1)
    let f: [[Double]] = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    var out = [Double]()
    for e in 0..<n {
      for ch in 0..<c {
        for i in 0..<oh {
          for j in 0..<ow {
            var acc = 0.0
            for a in 0..<3 {
              for b in 0..<3 {
                let (r, q) = (s * i + a - 1, s * j + b - 1)
                if r >= 0, r < h, q >= 0, q < w { acc += f[a][b] / 16 * x[((e * c + ch) * h + r) * w + q] }
              }
            }
            out.append(acc)
          }
        }
      }
    }
    return Tensor(out, shape: [n, c, oh, ow])
  }

  @Test("blur against its definition (stride 1 and 2, odd and even sizes); its backward is its transpose")
  func blur() throws {
    for (shape, s) in [([2, 3, 5, 6], 1), ([1, 2, 7, 7], 2), ([2, 1, 6, 4], 2)] {
      let x = randomTensor(shape, seed: UInt64(shape[2] * 10 + s))
      let y = Tensor<Double>(zeros: [0])
      try Blur.forward(x: x, stride: s, y: y)
      let ref = Self.naiveBlur(x, stride: s)
      #expect(y.shape == ref.shape)
      for i in 0..<y.count { #expect(abs(y[i] - ref[i]) < 1e-12) }
      try checkModule(Blur2d<Double>(stride: s), input: x)
    }
  }

  @Test("BlurPool's convolution and max pool: outputs by hand composition, gradients by finite differences")
  func blurredLayers() throws {
    let conv = Conv2d<Double>(2, 3, kernelSize: 3, stride: 2, padding: 1)
    conv.weight.value.copy(from: randomTensor(conv.weight.value.shape, seed: 1))
    conv.bias!.value.copy(from: randomTensor([3], seed: 2))
    let x = randomTensor([2, 2, 7, 7], seed: 3)
    let plain = try conv.forward(Self.naiveBlur(x, stride: 1)).clone()
    conv.preBlur = Blur2d(stride: 1)
    let blurred = try conv.forward(x)
    #expect(blurred.shape == [2, 3, 4, 4])
    for i in 0..<plain.count { #expect(abs(plain[i] - blurred[i]) < 1e-12) }
    try checkModule(conv, input: x)

    let pool = MaxPool2d<Double>(2)
    pool.postBlur = Blur2d(stride: 2)
    let p = try pool.forward(x)
    #expect(p.shape == [2, 2, 3, 3], "as the plain pool: 7 -> 6 (stride-1 pool) -> (6 - 1) / 2 + 1")
    let stride1 = try MaxPool2d<Double>(2, stride: 1).forward(x)
    let ref = Self.naiveBlur(stride1, stride: 2)
    for i in 0..<p.count { #expect(abs(p[i] - ref[i]) < 1e-12) }
    try checkModule(pool, input: randomTensor([1, 2, 6, 5], seed: 4))
  }

  static func block(_ cin: Int, _ cout: Int, down: Bool) -> BasicBlock<Double> {
    let b = BasicBlock<Double>(cin, cout, downsample: down)
    for (i, (_, p)) in b.namedParameters().enumerated() {
      p.value.copy(from: randomTensor(p.value.shape, seed: 40 + UInt64(i)))
    }
    return b
  }

  @Test("stochastic depth: a skipped block is relu(shortcut(x)) with zero main-path gradients; per-example scales; evaluation scales by 1 - p")
  func residualDrop() throws {
    for (cin, cout, down) in [(3, 3, false), (2, 4, true)] {
      let x = randomTensor([3, cin, 6, 6], seed: 50)
      let b = Self.block(cin, cout, down: down)
      let full = try b.forward(x).clone()
      b.residualDrop = .skip
      let skipped = try b.forward(x).clone()
      let shortcutOnly: Tensor<Double> = try b.shortcut.map { try $0.forward(x).clone() } ?? x
      for i in 0..<skipped.count { #expect(skipped[i] == max(shortcutOnly[i], 0)) }
      try checkModule(b, input: x)
      for p in [b.conv1.weight, b.bn1.weight, b.conv2.weight, b.bn2.bias] {
        #expect(p.grad.array.allSatisfy { $0 == 0 })
      }
      // Example 0 dropped, example 1 kept, example 2 halved.
      b.residualDrop = .scale([0, 1, 0.5])
      let mixed = try b.forward(x).clone()
      let per = mixed.count / 3
      for i in 0..<per {
        #expect(abs(mixed[i] - skipped[i]) < 1e-12)
        #expect(abs(mixed[per + i] - full[per + i]) < 1e-12)
      }
      try checkModule(b, input: x)
      b.residualDrop = .keep
      b.setTraining(false)
      b.evaluationScale = 0.75
      try checkModule(b, input: x)
    }
  }

  @Test("ghost batch norm: each chunk normalised alone (torch.chunk sizes), running stats at momentum / chunks, gradients by finite differences")
  func ghostBatchNorm() throws {
    let x = randomTensor([7, 2, 3, 3], seed: 60)
    let bn = BatchNorm<Double>(2)
    bn.weight.value.copy(from: randomTensor([2], seed: 61))
    bn.ghostBatchSize = 3  // torch.chunk(x, ceil(7 / 3) = 3): sizes 3, 3, 1
    let y = try bn.forward(x).clone()
    let per = 18
    var start = 0
    var mean = [0.0, 0.0]
    var variance = [1.0, 1.0]
    for size in [3, 3, 1] {
      let chunk = Tensor(Array(x.array[(start * per)..<((start + size) * per)]), shape: [size, 2, 3, 3])
      let ref = BatchNorm<Double>(2)
      ref.weight.value.copy(from: bn.weight.value)
      ref.momentum = 0.1 / 3
      ref.runningMean.copy(from: Tensor(mean, shape: [2]))
      ref.runningVar.copy(from: Tensor(variance, shape: [2]))
      let r = try ref.forward(chunk)
      for i in 0..<r.count { #expect(abs(r[i] - y[start * per + i]) < 1e-12) }
      (mean, variance) = (ref.runningMean.array, ref.runningVar.array)
      start += size
    }
    for c in 0..<2 {
      #expect(abs(bn.runningMean[c] - mean[c]) < 1e-12)
      #expect(abs(bn.runningVar[c] - variance[c]) < 1e-12)
    }
    let g = BatchNorm<Double>(2)
    g.weight.value.copy(from: randomTensor([2], seed: 62))
    g.ghostBatchSize = 2
    try checkModule(g, input: randomTensor([5, 2, 2, 2], seed: 63))
  }

  @Test("weight standardization (dense and masked) and squeeze-excite: by hand, and by finite differences")
  func standardizationAndSqueezeExcite() throws {
    let x = randomTensor([2, 3, 5, 5], seed: 80)
    for masked in [false, true] {
      let conv = Conv2d<Double>(3, 4, kernelSize: 3, padding: 1)
      conv.weight.value.copy(from: randomTensor(conv.weight.value.shape, seed: 81))
      conv.bias!.value.copy(from: randomTensor([4], seed: 82))
      if masked {
        var r = RandomStream(seed: 83, purpose: "mask")
        conv.weight.mask = Tensor((0..<conv.weight.value.count).map { _ in r.uniform() < 0.4 ? 0 : 1 }, shape: conv.weight.value.shape)
        conv.weight.applyMask()
      }
      // By hand: the plain layer with each filter's kept entries standardized.
      let plain = Conv2d<Double>(3, 4, kernelSize: 3, padding: 1)
      plain.bias!.value.copy(from: conv.bias!.value)
      let w = conv.weight.value.array
      var hat = [Double]()
      for f in 0..<4 {
        let idx = (f * 27..<(f + 1) * 27).filter { conv.weight.mask == nil || conv.weight.mask![$0] != 0 }
        let mean = idx.map { w[$0] }.reduce(0, +) / Double(idx.count)
        let v = idx.map { (w[$0] - mean) * (w[$0] - mean) }.reduce(0, +) / Double(idx.count)
        for i in f * 27..<(f + 1) * 27 { hat.append(idx.contains(i) ? (w[i] - mean) / (v + 1e-10).squareRoot() : 0) }
      }
      plain.weight.value.copy(from: Tensor(hat, shape: conv.weight.value.shape))
      let ref = try plain.forward(x).clone()
      conv.standardizesWeights = true
      let y = try conv.forward(x)
      for i in 0..<y.count { #expect(abs(y[i] - ref[i]) < 1e-9) }
      try checkModule(conv, input: x)
    }
    // Squeeze-excite: the gate of example n, channel c is sigmoid(W2 relu(W1 mean(x))).
    let se = SqueezeExcite2d<Double>(channels: 3, latent: 2)
    se.fc1.value.copy(from: randomTensor([2, 3], seed: 84))
    se.fc2.value.copy(from: randomTensor([3, 2], seed: 85))
    let out = try se.forward(x)
    let means = (0..<6).map { i in (0..<25).map { x[i * 25 + $0] }.reduce(0, +) / 25 }
    for n in 0..<2 {
      let z = (0..<2).map { k in max(0, (0..<3).map { se.fc1.value[k * 3 + $0] * means[n * 3 + $0] }.reduce(0, +)) }
      for c in 0..<3 {
        let a = 1 / (1 + exp(-(0..<2).map { se.fc2.value[c * 2 + $0] * z[$0] }.reduce(0, +)))
        #expect(abs(out[(n * 3 + c) * 25 + 7] - x[(n * 3 + c) * 25 + 7] * a) < 1e-12)
      }
    }
    try checkModule(se, input: x)
    let conv = Conv2d<Double>(3, 3, kernelSize: 3, padding: 1)
    conv.weight.value.copy(from: randomTensor(conv.weight.value.shape, seed: 86))
    conv.squeezeExcite = se
    #expect(conv.namedParameters().map(\.0) == ["weight", "bias", "se.fc1.weight", "se.fc2.weight"])
    try checkModule(conv, input: x)
  }

  @Test("a frozen prefix stops the backward pass: gradients after it unchanged, before it untouched")
  func frozenPrefix() throws {
    let net: Network<Double> = try ModelZoo.make("cifar_resnet_8_4", inputShape: [1, 8, 8], classes: 3, as: Double.self)
    net.initialize(seed: 1, weights: .kaimingNormal)
    let x = randomTensor([4, 1, 8, 8], seed: 70)
    let labels: [Int32] = [0, 1, 2, 0]
    try net.lossAndGradients(input: x, labels: labels)
    let full = net.parameters.map { $0.1.grad.clone() }
    for (_, p) in net.parameters { p.grad.buffer.update(repeating: 7) }
    let body = net.body as! Sequential<Double>
    body.frozenPrefix = 3  // conv, bn, relu
    try net.lossAndGradients(input: x, labels: labels)
    for (k, (name, p)) in net.parameters.enumerated() {
      if name.hasPrefix("conv.") || name.hasPrefix("bn.") {
        #expect(p.grad.array.allSatisfy { $0 == 7 }, "\(name) was computed")
      } else {
        #expect(p.grad.array == full[k].array, "\(name) differs")
      }
    }
  }
}
