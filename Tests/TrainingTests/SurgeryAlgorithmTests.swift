import Datasets
import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing
import Training

/// Per step, the shape of the batch the network is given.
final class ShapeProbe: TrainingCallback {
  let name = "shape_probe"
  let events: Set<TrainingEvent> = [.beforeForward]
  var shapes: [[Int]] = []
  func handle(_ event: TrainingEvent, _ state: TrainingState) throws { shapes.append(state.input.shape) }
}

/// The methods that change the model or the batch's size (BlurPool, stochastic depth,
/// ghost batch norm, layer freezing, selective backprop, progressive resizing, ColOut) and
/// the recipes: function forms against hand-computed values, effects inside training,
/// determinism and resume, masks, and models they do not fit.
@Suite("Speed-up methods that change the model or the batch")
struct SurgeryAlgorithmTests {
  static let model = "cifar_resnet_8_4"  // widths 4, 8, 16: strided convolutions with 4 and 8 inputs

  /// Each with values that act within 12 steps of 20 examples (6 steps an epoch).
  static let each = [
    "blurpool:min_channels=4", "stochastic_depth:drop_rate=0.5",
    "stochastic_depth:stochastic_method=sample;drop_rate=0.5", "ghost_batchnorm:ghost_batch_size=8",
    "layer_freezing:freeze_start=0.1", "selective_backprop:start=0;end=1",
    "progressive_resizing:delay_fraction=0", "colout", "weight_standardization", "squeeze_excite:min_channels=4",
  ]
  static let all =
    "blurpool:min_channels=4,stochastic_depth:drop_rate=0.5,ghost_batchnorm:ghost_batch_size=8,layer_freezing:freeze_start=0.1,selective_backprop:start=0.2;end=0.8,progressive_resizing:delay_fraction=0.1,colout,ema:half_life=5ba,weight_standardization,squeeze_excite:min_channels=8"

  @Test("function forms: drop rates, freezing depth, resizing schedule and pixels, ColOut's rows, selection")
  func functionForms() throws {
    #expect(StochasticDepth.probability(block: 0, of: 4, rate: 0.2, linear: true) == 0.05)
    #expect(StochasticDepth.probability(block: 3, of: 4, rate: 0.2, linear: true) == 0.2)
    #expect(StochasticDepth.probability(block: 0, of: 4, rate: 0.2, linear: false) == 0.2)
    let sd = StochasticDepth(perSample: false, dropRate: 0.2, linear: true, warmup: 0.5)
    #expect(abs(sd.rate(at: 0.25) - 0.1) < 1e-12 && sd.rate(at: 0.75) == 0.2)
    // 9 layers: nothing until freeze_start, then int(pct * 8).
    #expect(LayerFreezing.depth(at: 0.5, layers: 9, start: 0.5, level: 1) == 0)
    #expect(LayerFreezing.depth(at: 0.75, layers: 9, start: 0.5, level: 1) == 4)
    #expect(LayerFreezing.depth(at: 1, layers: 9, start: 0.5, level: 1) == 8)
    #expect(LayerFreezing.depth(at: 1, layers: 9, start: 0.5, level: 0.5) == 4)
    // W = 28, initial 0.5, delay 0.5, fine-tune 0.2: 14 / 4 = 3.5 rounds to 4 (ties to
    // even), so 16 / 28 until half way; at 0.65, s = 0.75 and 21 / 4 = 5.25 rounds to 5, so
    // 20 / 28; full size from 0.8 on.
    let scale = { (t: Double) in
      ProgressiveResizing.scale(at: t, width: 28, initialScale: 0.5, finetune: 0.2, delay: 0.5, increment: 4)
    }
    #expect(scale(0) == 16.0 / 28 && scale(0.49) == 16.0 / 28)
    #expect(abs(scale(0.65) - 20.0 / 28) < 1e-12)
    #expect(scale(0.8) == 1 && scale(1) == 1)
    // Nearest neighbour at s = 0.5 keeps every other pixel; at 2/3, pixels 0, 1, 3, 4 (floor(i * 1.5)).
    let x = Tensor<Float>((0..<36).map(Float.init), shape: [1, 1, 6, 6])
    let y = Tensor<Float>(zeros: [0])
    ProgressiveResizing.resize(x, scale: 0.5, into: y)
    #expect(y.shape == [1, 1, 3, 3] && y.array == [0, 2, 4, 12, 14, 16, 24, 26, 28])
    ProgressiveResizing.resize(x, scale: 4.0 / 6, into: y)
    #expect(y.shape == [1, 1, 4, 4] && Array(y.array.prefix(4)) == [0, 1, 3, 4])
    var r = RandomStream(seed: 1, purpose: "t")
    let rows = ColOut.kept(28, drop: 0.15, random: &r)
    #expect(rows.count == 23 && rows == rows.sorted() && Set(rows).count == 23 && rows.allSatisfy { $0 < 28 })
    // Selection: int(keep N) distinct examples; over many draws the highest loss is kept
    // most often (probability grows with its rank).
    let losses = [0.1, 5, 0.3, 2, 0.2, 1, 0.4, 3]
    var counts = Array(repeating: 0, count: 8)
    for seed in 0..<400 {
      var rs = RandomStream(seed: UInt64(seed), purpose: "sb")
      let kept = SelectiveBackprop.select(losses: losses, keep: 0.5, random: &rs)
      #expect(kept.count == 4 && Set(kept).count == 4 && kept == kept.sorted())
      for k in kept { counts[k] += 1 }
    }
    #expect(counts[1] > counts[7] && counts[7] > counts[6] && counts[6] > counts[0], "\(counts)")
    let sb = SelectiveBackprop(start: 0.5, end: 0.9, keep: 0.5, interrupt: 2)
    #expect(!sb.selects(at: 0.4, batchInEpoch: 0) && sb.selects(at: 0.5, batchInEpoch: 0))
    #expect(!sb.selects(at: 0.5, batchInEpoch: 1) && !sb.selects(at: 0.9, batchInEpoch: 0))
  }

  @Test(
    "each changes training; together (with EMA) bit-identical at 1 and 3 threads and after an interrupted run"
  )
  func inTraining() throws {
    let base = try AlgorithmTests.train(CLI.tempDir(), "", model: Self.model)
    try base.run()
    for m in Self.each {
      let t = try AlgorithmTests.train(CLI.tempDir(), m, model: Self.model)
      try t.run()
      #expect(EventTests.weights(t) != EventTests.weights(base), "\(m) changed nothing")
    }
    var runs: [(dir: String, weights: [[Float]])] = []
    for threads in [1, 3] {
      runs.append(
        try withExclusiveThreads(threads) {
          let dir = CLI.tempDir()
          let t = try AlgorithmTests.train(dir, Self.all, model: Self.model)
          try t.run()
          return (dir, EventTests.weights(t))
        })
    }
    #expect(runs[0].weights == runs[1].weights, "1 and 3 threads differ")
    let dir = CLI.tempDir()
    #expect(throws: RunError.self) { try AlgorithmTests.train(dir, Self.all, stopAt: 9, model: Self.model).run() }
    let resumed = try AlgorithmTests.train(dir, Self.all, model: Self.model)
    try resumed.run()
    #expect(EventTests.weights(resumed) == runs[0].weights, "the resumed run differs")
    let a = FileManager.default.contents(atPath: RunFile.checkpoint.path(in: dir))
    let b = FileManager.default.contents(atPath: RunFile.checkpoint.path(in: runs[0].dir))
    #expect(a != nil && a == b, "checkpoints differ")
  }

  @Test("effects: frozen layers keep their values, selection halves the batch, resizing shrinks it, masks stay applied")
  func effects() throws {
    // Freezing from the start, all of it by the end: at the epoch end of step 6 (t = 0.5)
    // the first int(0.5 (L - 1)) layers freeze, so they end as a 6-step run left them.
    let frozen = try AlgorithmTests.train(CLI.tempDir(), "layer_freezing:freeze_start=0", model: Self.model)
    try frozen.run()
    let six = try AlgorithmTests.train(CLI.tempDir(), "layer_freezing:freeze_start=0", lastStep: 6, model: Self.model)
    try six.run()
    let names = frozen.network.parameters.map(\.0)
    let first = names.firstIndex { $0.hasPrefix("blocks.0.conv1") }!
    for k in 0..<first {
      #expect(frozen.network.parameters[k].1.value.array == six.network.parameters[k].1.value.array, "\(names[k])")
    }
    #expect(frozen.network.parameter("fc.weight")!.value.array != six.network.parameter("fc.weight")!.value.array)

    let probe = ShapeProbe()
    let sel = try AlgorithmTests.train(CLI.tempDir(), "selective_backprop:start=0.5;end=1;interrupt=0", model: Self.model)
    sel.callbacks.append(probe)
    try sel.run()
    #expect(probe.shapes.map { $0[0] } == [20, 20, 20, 20, 20, 20, 10, 10, 10, 10, 10, 10])

    let sizes = ShapeProbe()
    let pr = try AlgorithmTests.train(
      CLI.tempDir(), "progressive_resizing:initial_scale=0.5;delay_fraction=0.5;finetune_fraction=0.25",
      model: Self.model)
    pr.callbacks.append(sizes)
    try pr.run()
    // 12 wide at scale 0.5: round(6 / 4) = 2 (ties to even), so 8 x 8; full size from step 9.
    #expect(sizes.shapes.prefix(6).allSatisfy { $0 == [20, 1, 8, 8] }, "\(sizes.shapes)")
    #expect(sizes.shapes.suffix(3).allSatisfy { $0 == [20, 1, 12, 12] }, "\(sizes.shapes)")

    // Every method with half of every prunable weight masked: pruned weights stay zero.
    let masked = try AlgorithmTests.train(CLI.tempDir(), Self.all, model: Self.model)
    var rm = RandomStream(seed: 5, purpose: "mask")
    for (_, p) in masked.network.prunableParameters {
      let m = Tensor<Float>((0..<p.value.count).map { _ in rm.uniform() < 0.5 ? 0 : 1 }, shape: p.value.shape)
      for i in 0..<m.count { p.value[i] *= m[i] }
      p.mask = m
    }
    try masked.run()
    for (name, p) in masked.network.prunableParameters {
      let v = p.value
      #expect((0..<v.count).allSatisfy { p.mask![$0] != 0 || v[$0] == 0 }, "\(name) lost its mask")
    }
  }

  @Test("models a method does not fit: one clear line; a surgery that changes nothing is a warning")
  func badInput() throws {
    let lenet: () throws -> Network<Float> = {
      try ModelZoo.make("mnist_lenet_300_100", inputShape: EventTests.shape, classes: 10)
    }
    let conv2: () throws -> Network<Float> = {
      try ModelZoo.make("cifar_conv_2", inputShape: EventTests.shape, classes: 10)
    }
    for (method, net, message) in [
      ("progressive_resizing", lenet, "needs a model that takes any image size"),
      ("colout", conv2, "needs a model that takes any image size"),
      ("stochastic_depth", conv2, "needs residual blocks; cifar_conv_2 has none"),
      ("blurpool", lenet, "needs strided convolutions or max pooling"),
      ("ghost_batchnorm", lenet, "needs batch norm layers"),
      ("weight_standardization", lenet, "needs convolutions"),
      ("squeeze_excite", lenet, "needs convolutions"),
    ] {
      let callbacks = try Algorithms.callbacks([method])
      do {
        _ = try Trainer.initialize(network: try net(), callbacks: callbacks)
        Issue.record("\(method) was accepted")
      } catch {
        #expect("\(error)".contains(message) && !"\(error)".contains("\n"), "\(method): \(error)")
      }
    }
    let resnet = try ModelZoo.make(Self.model, inputShape: EventTests.shape, classes: 10) as Network<Float>
    for text in ["blurpool:min_channels=1000", "squeeze_excite:min_channels=1000", "weight_standardization:n_last_layers_ignore=99"] {
      let none = try Algorithms.parse(text)[0]
      #expect(try AlgorithmRecipes.fits(none, network: resnet)?.contains("changes nothing") == true, "\(text)")
    }
    for (text, message) in [
      ("blurpool:blur_first=false", "blur_first=false"),
      ("progressive_resizing:delay_fraction=0.9", "delay_fraction + finetune_fraction"),
      ("stochastic_depth:stochastic_method=sample;drop_warmup=0.1dur", "drop_warmup needs"),
      ("stochastic_depth:drop_rate=1", "drop_rate must be in [0, 1)"),
      ("selective_backprop:keep=0", "keep must be in (0, 1]"),
      ("layer_freezing:freeze_start=1", "freeze_start must be in [0, 1)"),
    ] {
      do {
        _ = try Algorithms.parse(text)
        Issue.record("\(text) was accepted")
      } catch { #expect("\(error)".contains(message), "\(text): \(error)") }
    }
  }

  @Test("lth train with a method the model does not fit, or an unknown recipe: one line, non-zero exit, a finished run untouched")
  func badInputCLI() throws {
    let out = CLI.tempDir()
    let base = ["train", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--training-steps", "2it", "--output", out, "--quiet"]
    let good = try CLI.run(base)
    try #require(good.status == 0, "\(good.stderr)")
    let dir = try CLI.runDir(out)
    let before = FileManager.default.contents(atPath: RunFile.modelFinal.path(in: dir))
    for (extra, message) in [
      (["--algorithms", "progressive_resizing"], "needs a model that takes any image size"),
      (["--algorithms", "blurpool"], "needs strided convolutions or max pooling"),
      (["--recipe", "spicy"], "unknown recipe 'spicy'"),
    ] {
      let r = try CLI.run(base + extra)
      #expect(r.status != 0 && r.stderr.contains(message), "\(extra): \(r.stderr)")
      #expect(r.stderr.split(separator: "\n").count == 1, "\(extra): \(r.stderr)")
    }
    #expect(before != nil && FileManager.default.contents(atPath: RunFile.modelFinal.path(in: dir)) == before)
  }

  @Test("recipes: every hot method fits a ResNet; Conv-2 loses resizing, ColOut and stochastic depth; LeNet BlurPool too")
  func recipes() throws {
    let make = { (m: String) in try ModelZoo.make(m, inputShape: [1, 28, 28], classes: 10) as Network<Float> }
    let hot = try AlgorithmRecipes.expand("hot", for: make("cifar_resnet_20_8"))
    #expect(
      hot.kept.map(\.name) == [
        "blurpool", "ema", "label_smoothing", "progressive_resizing", "mixup", "sam", "colout", "stochastic_depth",
      ] && hot.dropped.isEmpty)
    #expect(hot.kept.first { $0.name == "sam" }!.text == "sam:rho=0.5;epsilon=1e-12;interval=5")
    let conv = try AlgorithmRecipes.expand("hot", for: make("cifar_conv_2"))
    #expect(Set(conv.dropped.map(\.name)) == ["progressive_resizing", "colout", "stochastic_depth"])
    let mlp = try AlgorithmRecipes.expand("mild", for: make("mnist_lenet_300_100"))
    #expect(mlp.kept.map(\.name) == ["ema", "label_smoothing"])
    #expect(throws: EngineError.self) { try AlgorithmRecipes.expand("spicy", for: make("cifar_conv_2")) }
  }
}
