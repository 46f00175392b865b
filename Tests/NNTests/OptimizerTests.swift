import Engine
import NN
import Testing

/// Hand-computed torch.optim updates.
func param(_ values: [Double]) -> [(String, Parameter<Double>)] {
  let p = Parameter<Double>(shape: [values.count], prunable: true)
  for (i, v) in values.enumerated() { p.value[i] = v }
  return [("w", p)]
}

@Suite("Optimizers follow torch.optim semantics")
struct OptimizerTests {
  @Test("SGD with momentum") func momentum() throws {
    let ps = param([1])
    let opt = try SGD(ps, learningRate: 0.1, momentum: 0.9)
    var expected: [Double] = []
    for _ in 0..<3 {
      ps[0].1.grad[0] = 1
      opt.step()
      expected.append(ps[0].1.value[0])
    }
    // buf = 1, 1.9, 2.71 -> w = 0.9, 0.71, 0.439
    #expect(zip(expected, [0.9, 0.71, 0.439]).allSatisfy { abs($0 - $1) < 1e-12 })
  }

  @Test("SGD with Nesterov momentum and weight decay") func nesterov() throws {
    let ps = param([2])
    let opt = try SGD(ps, learningRate: 0.1, momentum: 0.5, nesterov: true, weightDecay: 0.1)
    // step 1: d = 1 + 0.2 = 1.2, buf = 1.2, upd = 1.2 + 0.6 = 1.8, w = 2 - 0.18 = 1.82
    ps[0].1.grad[0] = 1
    opt.step()
    #expect(abs(ps[0].1.value[0] - 1.82) < 1e-12)
    // step 2: d = 1 + 0.182 = 1.182, buf = 0.6 + 1.182 = 1.782, upd = 1.182 + 0.891 = 2.073
    ps[0].1.grad[0] = 1
    opt.step()
    #expect(abs(ps[0].1.value[0] - (1.82 - 0.2073)) < 1e-12)
  }

  @Test("plain SGD with weight decay") func plain() throws {
    let ps = param([1, -1])
    let opt = try SGD(ps, learningRate: 0.5, weightDecay: 0.2)
    ps[0].1.grad[0] = 0.4
    ps[0].1.grad[1] = 0
    opt.step()
    #expect(abs(ps[0].1.value[0] - (1 - 0.5 * 0.6)) < 1e-12)
    #expect(abs(ps[0].1.value[1] - (-1 + 0.5 * 0.2)) < 1e-12)
  }

  @Test("Adam bias correction and L2 weight decay") func adam() throws {
    let ps = param([1, 1])
    let opt = try Adam(ps, learningRate: 0.01, weightDecay: 0.5)
    ps[0].1.grad[0] = 3
    ps[0].1.grad[1] = -0.5
    opt.step()
    // First step: m^ = g', v^ = g'^2 so the move is lr * g'/(|g'| + eps) ~ lr * sign(g').
    // g' = 3.5 and 0 for the two entries.
    #expect(abs(ps[0].1.value[0] - (1 - 0.01 * 3.5 / (3.5 + 1e-8))) < 1e-12)
    #expect(ps[0].1.value[1] == 1)
    // Second step by hand.
    ps[0].1.grad[0] = 1
    let w = ps[0].1.value[0]
    let g1 = 3.5
    let g2 = 1 + 0.5 * w
    let m = 0.9 * (0.1 * g1) + 0.1 * g2
    let v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2
    let expected = w - 0.01 / (1 - 0.81) * m / ((v).squareRoot() / (1 - 0.999 * 0.999).squareRoot() + 1e-8)
    opt.step()
    #expect(abs(ps[0].1.value[0] - expected) < 1e-12)
  }

  @Test("masks keep pruned weights, gradients and state at exactly zero") func masks() throws {
    for useAdam in [false, true] {
      let ps = param([1, 2, 3, 4])
      let p = ps[0].1
      p.mask = Tensor([1, 0, 1, 0], shape: [4])
      p.applyMask()
      let opt: any Optimizer<Double> =
        useAdam
        ? try Adam(ps, learningRate: 0.1, weightDecay: 0.1)
        : try SGD(ps, learningRate: 0.1, momentum: 0.9, weightDecay: 0.1)
      for _ in 0..<4 {
        for i in 0..<4 { p.grad[i] = 1 }
        opt.step()
        #expect(p.value[1] == 0 && p.value[3] == 0)
        #expect(p.value[0] != 1)
        for (_, s) in opt.namedState { #expect(s[1] == 0 && s[3] == 0) }
      }
    }
  }

  @Test("impossible hyperparameters are rejected") func badHyperparameters() {
    #expect(throws: EngineError.self) { try SGD(param([1]), learningRate: 0) }
    #expect(throws: EngineError.self) { try SGD(param([1]), learningRate: -1) }
    #expect(throws: EngineError.self) { try SGD(param([1]), learningRate: 0.1, nesterov: true) }
    #expect(throws: EngineError.self) { try Adam(param([1]), learningRate: 0.1, beta1: 1) }
  }
}
