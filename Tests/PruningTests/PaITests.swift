import Engine
import Experiments
import Families
import Foundation
import NN
import Pruning
import TestSupport
import Testing
import Training

/// A Float64 network with seeded weights and a small random batch.
func scoringNet(_ model: String, input: [Int], classes: Int = 3, seed: UInt64 = 7) throws -> (
  Network<Double>, ScoreBatch
) {
  let net: Network<Double> = try ModelZoo.make(model, inputShape: input, classes: classes, as: Double.self)
  net.initialize(seed: seed, weights: .kaimingNormal)
  for (n, p) in net.parameters where n.hasSuffix("bias") {
    var r = RandomStream(seed: seed, purpose: "test-bias", index: UInt64(n.count))
    for i in 0..<p.value.count { p.value[i] = 0.1 * r.normal() }
  }
  let n = 2 * classes
  let x = Tensor<Double>(zeros: [n] + input)
  var r = RandomStream(seed: seed, purpose: "test-batch")
  for i in 0..<x.count { x[i] = r.normal() }
  return (net, ScoreBatch(x: x, labels: (0..<n).map { Int32($0 % classes) }))
}

/// dL/dw[i] of tensor `name` by central differences in Float64 (the slow reference).
func numericGradient(
  _ net: Network<Double>, _ b: ScoreBatch, _ name: String, _ i: Int, temperature: Double = 1
) throws -> Double {
  let p = net.parameter(name)!
  let w = p.value[i]
  let h = 1e-6 * max(1, abs(w))
  func loss() throws -> Double {
    try net.lossAndGradients(input: b.x, labels: b.labels, temperature: temperature).loss
  }
  p.value[i] = w + h
  let up = try loss()
  p.value[i] = w - h
  let down = try loss()
  p.value[i] = w
  return (up - down) / (2 * h)
}

func context(_ net: Network<Double>, _ b: ScoreBatch?) -> ScoringContext {
  ScoringContext(network: net, mask: Mask(ones: net), batch: b, seed: 3, round: 1)
}

@Suite("Pruning at initialisation: scores, allocation, connectivity")
struct PaIScoreTests {
  @Test("magnitude and SNIP against hand computations (finite differences) on an MLP and a conv net")
  func snipAndMagnitude() throws {
    for (model, input) in [("mnist_lenet_5_4", [1, 2, 3]), ("cifar_conv_2", [2, 4, 4])] {
      let (net, b) = try scoringNet(model, input: input)
      net.setTraining(true)
      let mag = try MagnitudeScore().scores(context(net, nil))
      let snip = try SNIPScore().scores(context(net, b))
      for (n, p) in net.prunableParameters {
        // Every weight of small tensors, an evenly spaced sample of large ones.
        let step = max(1, p.value.count / 25)
        for i in stride(from: 0, to: p.value.count, by: step) {
          #expect(mag[n]![i] == abs(p.value[i]))
          let g = try numericGradient(net, b, n, i)
          let expected = abs(p.value[i] * g)
          #expect(abs(snip[n]![i] - expected) <= 1e-6 * max(1e-3, expected), "\(model) \(n)[\(i)]")
        }
      }
    }
  }

  @Test("GraSP: H g against a Float64 Hessian assembled column by column; kept = lowest S = -w Hg")
  func grasp() throws {
    let (net, b) = try scoringNet("mnist_lenet_4_3", input: [1, 2, 2])
    let mask = Mask(ones: net)
    let (hg, g) = try GraSPScore.hessianGradient(net, mask: mask, batch: b)
    // H column j: central difference of the temperature-200 gradient along weight j.
    let prunable = net.prunableParameters
    let coords = prunable.enumerated().flatMap { t, e in (0..<e.1.value.count).map { (t, $0) } }
    func gradient() throws -> [Double] {
      try net.lossAndGradients(input: b.x, labels: b.labels, temperature: GraSPScore.temperature)
      return prunable.flatMap { _, p in (0..<p.grad.count).map { p.grad[$0] } }
    }
    let gFlat = g.flatMap { $0 }
    var hgExact = [Double](repeating: 0, count: coords.count)
    for (j, (t, i)) in coords.enumerated() {
      let p = prunable[t].1
      let w = p.value[i]
      let h = 1e-5
      p.value[i] = w + h
      let up = try gradient()
      p.value[i] = w - h
      let down = try gradient()
      p.value[i] = w
      for k in 0..<coords.count { hgExact[k] += (up[k] - down[k]) / (2 * h) * gFlat[j] }
    }
    let hgFlat = hg.flatMap { $0 }
    let scale = hgExact.map(abs).max()!
    #expect(scale > 0)
    for k in 0..<coords.count {
      #expect(abs(hgFlat[k] - hgExact[k]) <= 1e-5 * scale, "Hg[\(k)]: \(hgFlat[k]) vs \(hgExact[k])")
    }
    // The sign trap: at density d GraSP keeps the weights with the LOWEST S = -w * Hg.
    let weights = prunable.flatMap { _, p in (0..<p.value.count).map { p.value[$0] } }
    let S = zip(weights, hgExact).map { -$0 * $1 }
    let keep = 10
    let pooled = prunable.map(\.0)
    let m = try PaIPruner.prune(
      network: net, start: mask, method: GraSPScore(), density: Double(keep) / Double(coords.count),
      allocation: .global, rounds: 1, pooled: pooled, batch: b, seed: 1)
    let kept = coords.enumerated().filter { _, c in m.values[prunable[c.0].0]![c.1] == 1 }.map(\.offset)
    let lowest = S.indices.sorted { S[$0] < S[$1] }.prefix(keep)
    #expect(Set(kept) == Set(lowest))
  }

  @Test("SynFlow's conservation law: every layer's total score equals R (bias-free ReLU MLP)")
  func synflowConservation() throws {
    let (net, _) = try scoringNet("mnist_lenet_20_12_8", input: [1, 3, 5])
    for (n, p) in net.parameters where n.hasSuffix("bias") { p.value.zero() }
    let s = try SynFlowScore().scores(context(net, nil))
    let r = try net.synflowGradients()
    #expect(r > 0)
    for (n, _) in net.prunableParameters {
      let total = s[n]!.reduce(0, +)
      #expect(abs(total - r) <= 1e-12 * r, "\(n): \(total) vs R = \(r)")
    }
  }

  @Test("ERK: counts sum exactly to the target, densities follow the formula, capped at 1")
  func erk() throws {
    let net: Network<Float> = try ModelZoo.make("cifar_conv_2")
    let mask = Mask(ones: net)
    for d in [0.5, 0.1, 0.0032] {
      let keep = Selector.keepCount(d, of: mask.totalCount)
      let counts = Selector.erkCounts(shapes: mask.shapes, pooled: mask.names, keep: keep)
      #expect(counts.values.reduce(0, +) == keep)
      // Unsaturated tensors: density / ((sum of dims) / (product of dims)) is one constant.
      var ratios: [Double] = []
      for n in mask.names where counts[n]! < mask.total(n) {
        let raw = Double(mask.shapes[n]!.reduce(0, +)) / Double(mask.total(n))
        ratios.append(Double(counts[n]!) / Double(mask.total(n)) / raw)
        #expect(counts[n]! >= 0)
      }
      let lo = ratios.min()!
      let hi = ratios.max()!
      #expect((hi - lo) / hi < 0.05, "d=\(d): \(ratios)")
    }
    // At 50%, the small layers saturate (dense) and the excess goes to the others.
    let half = Selector.erkCounts(
      shapes: mask.shapes, pooled: mask.names, keep: Selector.keepCount(0.5, of: mask.totalCount))
    #expect(mask.names.contains { half[$0]! == mask.total($0) })
  }

  @Test("layerwise and global allocation: exact counts, positional ties, minimum density")
  func allocation() throws {
    let net: Network<Float> = try ModelZoo.make("mnist_lenet_10_5", inputShape: [1, 2, 2], classes: 3)
    let mask = Mask(ones: net)
    var scores: Scores = [:]
    for n in mask.names { scores[n] = (0..<mask.total(n)).map { Double($0 % 4) } }  // many ties
    let lw = try Selector.select(scores, mask: mask, pooled: mask.names, density: 0.5, allocation: .layerwise)
    for n in mask.names { #expect(lw.remaining(n) == Selector.keepCount(0.5, of: mask.total(n))) }
    let g = try Selector.select(scores, mask: mask, pooled: mask.names, density: 0.3, allocation: .global)
    #expect(g.remainingCount == Selector.keepCount(0.3, of: mask.totalCount))
    // The global threshold (quickselect) against a full sort, with and without ties.
    var r = RandomStream(seed: 5, purpose: "test-select")
    for trial in 0..<40 {
      let n = 1 + r.int(below: 300)
      let values = (0..<n).map { _ in trial % 2 == 0 ? Double(r.int(below: 7)) : r.normal() }
      let k = r.int(below: n)
      var copy = values
      #expect(Selector.kthSmallest(&copy, k) == values.sorted()[k], "trial \(trial)")
    }
    // Of equal scores, the earlier positions go first: the kept 2s are the last ones.
    let md = try Selector.select(
      scores, mask: mask, pooled: mask.names, density: 0.01, allocation: .global, minDensity: 0.2)
    for n in mask.names { #expect(Double(md.remaining(n)) >= 0.2 * Double(mask.total(n))) }
  }

  /// A mask of `mnist_lenet_4_3` on a 2x2 input, all ones.
  func smallMLP() throws -> (Network<Double>, Mask) {
    let net: Network<Double> = try ModelZoo.make(
      "mnist_lenet_4_3", inputShape: [1, 2, 2], classes: 2, as: Double.self)
    return (net, Mask(ones: net))
  }

  @Test("effective density on hand-built masks: a dead unit, a cut layer")
  func effectiveDensity() throws {
    let (net, full) = try smallMLP()
    let c0 = try Connectivity.analyze(full, scratch: net)
    #expect(c0.effectiveCount == full.totalCount && !c0.isCollapsed)
    // Hidden unit 1 of the first layer keeps its inputs but loses every outgoing weight:
    // its 4 incoming weights are dead, and it is a dead unit.
    var m = full
    for o in 0..<3 { m.values["fc_layers.1.weight"]![o * 4 + 1] = 0 }
    let c1 = try Connectivity.analyze(m, scratch: net)
    #expect(c1.effective["fc_layers.0.weight"] == 12)
    #expect(c1.deadUnits["fc_layers.0.weight"] == 1)
    #expect(c1.effectiveCount == m.remainingCount - 4)
    #expect(abs(c1.effectiveDensity(m) - Double(m.remainingCount - 4) / Double(m.totalCount)) < 1e-15)
    // Unit 2 of layer 2 receives nothing: its outgoing weights (to the 2 classes) are dead too.
    var m2 = full
    for i in 0..<4 { m2.values["fc_layers.1.weight"]![2 * 4 + i] = 0 }
    let c2 = try Connectivity.analyze(m2, scratch: net)
    #expect(c2.effective["fc.weight"] == 4)
    #expect(c2.deadUnits["fc_layers.1.weight"] == 1)
    // A cut layer: no path at all, and the error names the empty tensor.
    var cut = full
    cut.values["fc_layers.1.weight"] = [Float](repeating: 0, count: 12)
    let c3 = try Connectivity.analyze(cut, scratch: net)
    #expect(c3.isCollapsed && c3.effectiveCount == 0)
    #expect(c3.collapseDescription(cut).contains("fc_layers.1.weight keeps no weight"))
  }

  @Test(
    "SynFlow (100 rounds) keeps every layer of Conv-2 non-empty at density 1e-3 (and where one-shot magnitude empties one)",
    .tags(.endToEnd), .endToEnd
  )
  func synflowAvoidsCollapse() throws { try Self.synflowAvoidsCollapse("cifar_conv_2") }

  /// The same on VGG-11: about 250 s of Float64 work on one core, so a science check of
  /// `make verify` (LTH_TEST_TIER=science), not of `make test`.
  @Test(
    "SynFlow (100 rounds) keeps every layer of VGG-11 non-empty at density 1e-3 (and where one-shot magnitude empties one)",
    .tags(.endToEnd), .enabled(if: TestTier.science, "a science check: make verify runs it")
  )
  func synflowAvoidsCollapseVGG11() throws { try Self.synflowAvoidsCollapse("cifar_vgg_11") }

  static func synflowAvoidsCollapse(_ model: String) throws {
    do {
      let f: Network<Float> = try ModelZoo.make(model)
      f.initialize(seed: 1, weights: try Recipe.forModel(model).initializer)
      let net: Network<Double> = try ModelZoo.make(model, as: Double.self)
      try net.copyState(from: f)
      let start = Mask(ones: net)
      func prune(_ method: any ScoreMethod, _ d: Double, rounds: Int) throws -> Mask {
        try PaIPruner.prune(
          network: net, start: start, method: method, density: d, allocation: .global, rounds: rounds,
          pooled: start.names, batch: nil, seed: 1)
      }
      // The highest density of 1e-3, 3e-4, 1e-4, ... at which one-shot magnitude empties a layer.
      let before = try prune(MagnitudeScore(), 1e-3, rounds: 1)
      _ = try prune(SynFlowScore(), 0.5, rounds: 2)
      #expect(try prune(MagnitudeScore(), 1e-3, rounds: 1) == before, "scoring changed the network")
      let collapseAt = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5].first {
        !Connectivity.emptyTensors(try! prune(MagnitudeScore(), $0, rounds: 1)).isEmpty
      }
      #expect(collapseAt != nil, "\(model): one-shot magnitude never emptied a layer")
      for d in Set([1e-3, collapseAt ?? 1e-3]) {
        let synflow = try prune(SynFlowScore(), d, rounds: 100)
        #expect(
          Connectivity.emptyTensors(synflow).isEmpty,
          "\(model) at \(d): \(Connectivity.emptyTensors(synflow))")
        #expect(!(try Connectivity.analyze(synflow, scratch: net)).isCollapsed)
      }
      print("\(model): one-shot magnitude empties a layer at density \(collapseAt ?? 0); SynFlow does not")
    }
  }
}
