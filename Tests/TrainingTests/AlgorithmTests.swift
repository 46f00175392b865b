import Datasets
import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing
import Training

/// Per step, the fewest exact zeros in one example of the batch the network is given.
final class InputProbe: TrainingCallback {
  let name = "input_probe"
  let events: Set<TrainingEvent> = [.beforeForward]
  var fewestZeros: [Int] = []
  func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    let x = state.input
    let n = state.labels.count
    let per = x.count / n
    fewestZeros.append((0..<n).map { i in (0..<per).filter { x[i * per + $0] == 0 }.count }.min() ?? 0)
  }
}

/// The speed-up methods: `--algorithms` syntax, each method's function form against a
/// hand-computed reference, its effect inside training, and determinism and resume.
@Suite("Speed-up methods (algorithms)")
struct AlgorithmTests {
  @Test("--algorithms: defaults filled in, one canonical text, bad input refused in one line")
  func parsing() throws {
    let specs = try Algorithms.parse(
      "label_smoothing:smoothing=0.2,ema,gradient_clipping:clipping_type=value")
    #expect(
      specs.map(\.text) == [
        "label_smoothing:smoothing=0.2", "ema:half_life=1000ba;update_interval=1ba",
        "gradient_clipping:clipping_type=value;clipping_threshold=1.0",
      ])
    #expect(try Algorithms.parse("").isEmpty)
    for (text, message) in [
      ("blurpool2", "unknown method 'blurpool2'"), ("mixup:beta=1", "unknown parameter 'beta=1'"),
      ("label_smoothing:smoothing=1", "smoothing must be in [0, 1)"),
      ("mixup:alpha=-1", "alpha must be positive"),
      ("ema,ema", "ema is given twice"),
      ("gradient_clipping:clipping_type=l3", "must be one of norm, value, adaptive"),
      ("ema:half_life=0ba", "half_life must be a number of steps"),
      ("cutout:num_holes=1.5", "num_holes must be"),
    ] {
      #expect(throws: EngineError.self, "\(text)") { try Algorithms.parse(text) }
      do { _ = try Algorithms.parse(text) } catch {
        #expect("\(error)".contains(message), "\(text): \(error)")
      }
    }
  }

  @Test("soft-target cross-entropy: one-hot targets give CrossEntropy's loss and gradient; smoothing by hand")
  func softCrossEntropy() throws {
    var r = RandomStream(seed: 4, purpose: "test")
    let (n, k) = (5, 7)
    let logits = Tensor<Float>((0..<(n * k)).map { _ in Float(r.normal()) * 3 }, shape: [n, k])
    let labels: [Int32] = [0, 6, 3, 3, 1]
    let hard = Tensor<Float>(zeros: [0])
    let l0 = try CrossEntropy.loss(logits: logits, labels: labels, dLogits: hard)
    let q = Tensor<Float>(zeros: [0])
    SoftCrossEntropy.targets(labels: labels, classes: k, into: q)
    let soft = Tensor<Float>(zeros: [0])
    let l1 = SoftCrossEntropy.loss(logits: logits, targets: q, dLogits: soft)
    #expect(abs(l0 - l1) < 1e-6)
    for i in 0..<(n * k) { #expect(abs(hard[i] - soft[i]) < 1e-6) }
    // Logits [1, 2, 3], label 2, smoothing 0.3: targets [0.1, 0.1, 0.8], loss
    // log(e + e^2 + e^3) - (0.1 + 0.2 + 2.4).
    let g = Tensor<Float>(zeros: [0])
    let loss = LabelSmoothing.loss(
      logits: Tensor<Float>([1, 2, 3], shape: [1, 3]), labels: [2], smoothing: 0.3, dLogits: g)
    let lse = log(exp(1.0) + exp(2.0) + exp(3.0))
    #expect(abs(loss - (lse - 2.7)) < 1e-6)
    // The gradient against central differences of the loss.
    for j in 0..<3 {
      var plus: [Float] = [1, 2, 3]
      var minus: [Float] = [1, 2, 3]
      plus[j] += 1e-3
      minus[j] -= 1e-3
      let lp = LabelSmoothing.loss(
        logits: Tensor(plus, shape: [1, 3]), labels: [2], smoothing: 0.3, dLogits: Tensor(zeros: [0]))
      let lm = LabelSmoothing.loss(
        logits: Tensor(minus, shape: [1, 3]), labels: [2], smoothing: 0.3, dLogits: Tensor(zeros: [0]))
      #expect(abs(Double(g[j]) - (lp - lm) / 2e-3) < 1e-4)
    }
    // MixUp's targets: weight 0.25 on label 1, 0.75 on label 2.
    SoftCrossEntropy.targets(labels: [1], other: [2], weight: 0.25, classes: 3, into: q)
    #expect(q.array == [0, 0.25, 0.75])
  }

  @Test("MixUp mixes examples (batch-major and feature-major alike); lambda ~ Beta(alpha, alpha)")
  func mixup() throws {
    // Two examples of three features: x0 = [1, 2, 3], x1 = [10, 20, 30].
    let source = Tensor<Float>([1, 2, 3, 10, 20, 30], shape: [2, 3])
    let x = Tensor<Float>(zeros: [2, 3])
    MixUp.mix(x, source: source, n: 2, lambda: 0.25, perm: [1, 0])
    #expect(x.array == [7.75, 15.5, 23.25, 3.25, 6.5, 9.75])
    // The same batch feature-major: [F, L] with x[n, f] at f * L + n (L = 2 here).
    let fm = Tensor<Float>([1, 10, 2, 20, 3, 30], shape: [3, 2])
    fm.layout = .featureMajor(batch: 2)
    let y = Tensor<Float>(zeros: [3, 2])
    y.layout = fm.layout
    MixUp.mix(y, source: fm, n: 2, lambda: 0.25, perm: [1, 0])
    #expect(y.array == [7.75, 3.25, 15.5, 6.5, 23.25, 9.75])
    // Beta(alpha, alpha): mean 1/2, variance 1 / (4 (2 alpha + 1)).
    for alpha in [0.2, 2.0] {
      var r = RandomStream(seed: 1, purpose: "beta")
      let draws = (0..<4000).map { _ in Double(MixUp.draw(alpha: alpha, n: 2, &r).lambda) }
      let mean = draws.reduce(0, +) / Double(draws.count)
      let variance = draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(draws.count - 1)
      #expect(abs(mean - 0.5) < 0.02, "alpha \(alpha): mean \(mean)")
      #expect(abs(variance - 1 / (4 * (2 * alpha + 1))) < 0.01, "alpha \(alpha): variance \(variance)")
    }
  }

  @Test("CutOut zeroes the square in every channel, clipped at the border, in either layout")
  func cutout() throws {
    let x = Tensor<Float>(repeating: 1, shape: [2, 2, 4, 4])
    CutOut.cut(x, example: 1, batch: 2, image: (2, 4, 4), top: -1, left: 2, side: 3)
    // Example 1, both channels: rows 0-1, columns 2-3 are zero; example 0 untouched.
    for n in 0..<2 {
      for c in 0..<2 {
        for i in 0..<4 {
          for j in 0..<4 {
            let v = x[((n * 2 + c) * 4 + i) * 4 + j]
            #expect(v == (n == 1 && i <= 1 && j >= 2 ? 0 : 1))
          }
        }
      }
    }
    let fm = Tensor<Float>(repeating: 1, shape: [16, 2])
    fm.layout = .featureMajor(batch: 2)
    CutOut.cut(fm, example: 0, batch: 2, image: (1, 4, 4), top: 1, left: 1, side: 2)
    let zeros = (0..<16).filter { fm[$0 * 2] == 0 }
    #expect(zeros == [5, 6, 9, 10] && (0..<16).allSatisfy { fm[$0 * 2 + 1] == 1 })
    // A model whose input is not an image is refused.
    let mlp: Network<Float> = try ModelZoo.make("mnist_lenet_80_40", inputShape: [1, 1, 144], classes: 10)
    #expect(throws: EngineError.self) { _ = try CutOut(holes: 1, length: 0.5).initialize(mlp) }
  }

  @Test("EMA and gradient clipping against hand-computed values")
  func emaAndClipping() throws {
    let avg = Tensor<Float>([0, 4], shape: [2])
    EMA.update(avg, with: Tensor([2, 0], shape: [2]), smoothing: 0.75)
    #expect(avg.array == [0.5, 3])
    #expect(EMA(halfLife: 1000).smoothing == Float(pow(0.5, 1.0 / 1000)))
    #expect(EMA(halfLife: 10, updateInterval: 10).smoothing == 0.5)
    // Global norm over unpruned entries: [3, 4] (100 pruned) has norm 5, scaled to norm 1.
    let g = Tensor<Float>([3, 4, 100], shape: [3])
    let mask = Tensor<Float>([1, 1, 0], shape: [3])
    let norm = GradientClipping.clip([(g, g, mask)], kind: .norm, threshold: 1)
    #expect(norm == 5 && abs(g[0] - 0.6) < 1e-6 && abs(g[1] - 0.8) < 1e-6)
    let v = Tensor<Float>([-3, 0.5, 2], shape: [3])
    GradientClipping.clip([(v, v, nil)], kind: .value, threshold: 1)
    #expect(v.array == [-1, 0.5, 1])
    // Adaptive, per output row: row 0 has |w| = 1, |g| = 5 -> scaled to 0.1 * 1; row 1 has
    // |w| = 10, |g| = 0.5 < 1: kept.
    let ga = Tensor<Float>([3, 4, 0.3, 0.4], shape: [2, 2])
    let wa = Tensor<Float>([1, 0, 6, 8], shape: [2, 2])
    GradientClipping.clip([(ga, wa, nil)], kind: .adaptive, threshold: 0.1)
    for (a, b) in zip(ga.array, [Float(0.06), 0.08, 0.3, 0.4]) { #expect(abs(a - b) < 1e-6) }
  }

  @Test("SWA: the running mean by hand; at swa_end the weights are the mean of those it averaged")
  func swa() throws {
    let avg = Tensor<Float>([1, 0], shape: [2])
    SWA.update(avg, with: Tensor([4, 3], shape: [2]), count: 2)
    #expect(avg.array == [2, 1])
    #expect(throws: EngineError.self) { try Algorithms.parse("swa:swa_start=0.9dur;swa_end=0.5dur") }
    #expect(throws: EngineError.self) { try Algorithms.parse("swa:update_interval=2xx") }
    // Averaging every step from step 6 of 12: the final weights are the mean of the weights
    // at steps 6...12 (recorded before SWA acts on each batchEnd), here without batch norm.
    final class Snapshots: TrainingCallback {
      let name = "snapshots"
      let events: Set<TrainingEvent> = [.batchEnd]
      var taken: [[[Float]]] = []
      func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
        if state.step >= 6 { taken.append(state.network.parameters.map { $0.1.value.array }) }
      }
    }
    let t = try Self.train(CLI.tempDir(), "swa:swa_start=0.5dur;swa_end=1.0dur;update_interval=1ba")
    let probe = Snapshots()
    t.callbacks.insert(probe, at: 0)
    try t.run()
    #expect(probe.taken.count == 7)
    let final = EventTests.weights(t)
    for (k, w) in final.enumerated() {
      for i in stride(from: 0, to: w.count, by: max(1, w.count / 50)) {
        let mean = probe.taken.map { $0[k][i] }.reduce(0, +) / 7
        #expect(abs(w[i] - mean) <= 1e-5 * max(1, abs(mean)), "parameter \(k) entry \(i)")
      }
    }
  }

  @Test("resuming a checkpoint that lacks a method's state is one clear error, and the checkpoint is kept")
  func resumeWithoutState() throws {
    let dir = CLI.tempDir()
    #expect(throws: RunError.self) { try Self.train(dir, "", stopAt: 9).run() }  // checkpoint at step 6
    let before = FileManager.default.contents(atPath: RunFile.checkpoint.path(in: dir))
    do {
      try Self.train(dir, "ema").run()
      Issue.record("resumed without EMA's state")
    } catch {
      #expect("\(error)".contains("training callback ema is missing"), "\(error)")
    }
    #expect(before != nil && FileManager.default.contents(atPath: RunFile.checkpoint.path(in: dir)) == before)
  }

  @Test("SAM's perturbation and CutMix's box and paste against hand-computed values")
  func samAndCutMix() throws {
    // g = [3, 4] (100 pruned): norm 5, e = 0.5 g / 5 = [0.3, 0.4], 0 where pruned.
    let g = Tensor<Float>([3, 4, 100], shape: [3])
    let e = [Tensor<Float>(zeros: [0])]
    let norm = SAM.perturbation([(g, Tensor([1, 1, 0], shape: [3]))], rho: 0.5, epsilon: 0, into: e)
    #expect(norm == 5 && e[0].array == [0.3, 0.4, 0])
    // lambda 0.75: side ratio 1/2 of an 8 x 8 image; centred at (4, 4), and clipped at (0, 7).
    #expect(CutMix.box(lambda: 0.75, h: 8, w: 8, cy: 4, cx: 4) == (2, 2, 4, 4))
    #expect(CutMix.box(lambda: 0.75, h: 8, w: 8, cy: 0, cx: 7) == (0, 5, 2, 3))
    // Two 1 x 2 x 2 examples, box = the bottom row: pasted from the other example.
    let source = Tensor<Float>([1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 1, 2, 2])
    let x = source.clone()
    CutMix.paste(x, source: source, n: 2, perm: [1, 0], image: (1, 2, 2), box: (1, 0, 1, 2))
    #expect(x.array == [1, 2, 7, 8, 5, 6, 3, 4])
  }

  // MARK: inside training

  static func train(
    _ dir: String, _ algorithms: String, lastStep: Int = 12, stopAt: Int? = nil, optimizer: String = "adam",
    model: String = "cifar_conv_2"
  )
    throws -> Trainer
  {
    var callbacks = try Algorithms.callbacks(try Algorithms.parse(algorithms).map(\.text))
    if let s = stopAt {
      let killer = EventRecorder("killer")
      killer.stopAt = s
      callbacks.append(killer)
    }
    let net: Network<Float> = try Trainer.initialize(
      network: try ModelZoo.make(model, inputShape: EventTests.shape, classes: 10),
      callbacks: callbacks)
    net.initialize(seed: 3, weights: .kaimingNormal)
    let opt: any Optimizer<Float> =
      optimizer == "sgd"
      ? try SGD(net.parameters, learningRate: 0.1, momentum: 0) : try Adam(net.parameters, learningRate: 1e-3)
    let t = try Trainer(
      network: net, optimizer: opt,
      loader: try BatchLoader(dataset: EventTests.data, batchSize: 20, seed: 1, augment: false),
      evalSets: [("test", EventTests.data)], firstStep: 0, lastStep: lastStep, evalEvery: 4,
      learningRate: { _ in optimizer == "sgd" ? 0.1 : 1e-3 }, directory: dir, progress: .quiet)
    t.callbacks = callbacks
    t.seed = 11
    return t
  }

  /// The methods that act on any model, each with values that act within 12 steps (Adam
  /// is nearly blind to a clipping factor, so the threshold is one the gradients exceed);
  /// ``SurgeryAlgorithmTests/each`` has the rest.
  static let each = [
    "label_smoothing", "mixup", "cutmix", "cutout", "ema:half_life=5ba", "sam:rho=0.5;interval=2",
    "swa:swa_start=0.25dur;swa_end=0.75dur;update_interval=2ba",
    "gradient_clipping:clipping_type=value;clipping_threshold=0.001",
  ]

  static let all =
    "label_smoothing,mixup:alpha=0.4,cutout:length=0.25,ema:half_life=5ba,sam:rho=0.1;interval=2,gradient_clipping:clipping_threshold=0.5,swa:swa_start=0.25dur;swa_end=0.75dur;update_interval=2ba"

  @Test(
    "each method changes training; all together are bit-identical at 1 and 3 threads and after an interrupted run"
  )
  func inTraining() throws {
    let base = try Self.train(CLI.tempDir(), "")
    let baseEvaluated = try base.run().filter { $0.split == "test" }.map(\.accuracy)
    #expect(
      Set((Self.each + SurgeryAlgorithmTests.each).map { String($0.split(separator: ":")[0]) })
        == Set(Algorithms.names),
      "a registered method is not exercised")
    for m in Self.each {
      let t = try Self.train(CLI.tempDir(), m)
      let records = try t.run()
      let changed = EventTests.weights(t) != EventTests.weights(base)
      // EMA changes what is evaluated, not the training weights.
      let evaluated = records.filter { $0.split == "test" }.map(\.accuracy)
      #expect(m.hasPrefix("ema") ? evaluated != baseEvaluated : changed, "\(m) changed nothing")
    }
    // All together at 1 and 3 threads (thread counts are task-local; the pool is ours alone).
    var runs: [(dir: String, weights: [[Float]])] = []
    for threads in [1, 3] {
      runs.append(
        try withExclusiveThreads(threads) {
          let dir = CLI.tempDir()
          let t = try Self.train(dir, Self.all)
          try t.run()
          return (dir, EventTests.weights(t))
        })
    }
    #expect(runs[0].weights == runs[1].weights, "1 and 3 threads differ")
    // Interrupted mid-epoch (the checkpoint is at step 6), resumed in a new trainer.
    let dir = CLI.tempDir()
    #expect(throws: RunError.self) { try Self.train(dir, Self.all, stopAt: 9).run() }
    let resumed = try Self.train(dir, Self.all)
    try resumed.run()
    #expect(EventTests.weights(resumed) == runs[0].weights, "the resumed run differs")
    let a = FileManager.default.contents(atPath: RunFile.checkpoint.path(in: dir))
    let b = FileManager.default.contents(atPath: RunFile.checkpoint.path(in: runs[0].dir))
    #expect(a != nil && a == b, "checkpoints (EMA's average included) differ")
  }

  @Test("effects: EMA evaluates the average; clipping bounds each step; CutOut zeroes what the network sees")
  func effects() throws {
    // With a half-life of 10^9 steps the average stays at the initial weights: every
    // evaluation scores them, while the training weights move.
    let frozen = try Self.train(CLI.tempDir(), "ema:half_life=1000000000ba")
    let records = try frozen.run()
    let plain = try Self.train(CLI.tempDir(), "")
    let initial = try plain.evaluate(EventTests.data)
    let tests = records.filter { $0.split == "test" }
    #expect(tests.count >= 3 && tests.allSatisfy { abs($0.accuracy - initial.accuracy) < 1e-9 })
    // SGD (lr 0.1) with the global gradient norm clipped to 1e-4: no weight moves by more
    // than 12 steps x 0.1 x 1e-4.
    let clipped = try Self.train(
      CLI.tempDir(), "gradient_clipping:clipping_threshold=0.0001", optimizer: "sgd")
    let before = EventTests.weights(clipped)
    try clipped.run()
    for (a, b) in zip(EventTests.weights(clipped).joined(), before.joined()) {
      #expect(abs(a - b) <= 1.2e-4 + 1e-7)
    }
    // CutOut with a side of half the 12-pixel image: every example the network sees has at
    // least a 3 x 3 corner of zeros (a clipped 6 x 6 square), and the loader's batch does not.
    let probe = InputProbe()
    let holes = try Self.train(CLI.tempDir(), "cutout:length=0.5", lastStep: 4)
    holes.callbacks.append(probe)
    try holes.run()
    #expect(probe.fewestZeros.count == 4 && probe.fewestZeros.allSatisfy { $0 >= 9 }, "\(probe.fewestZeros)")
    let none = InputProbe()
    let plainRun = try Self.train(CLI.tempDir(), "", lastStep: 4)
    plainRun.callbacks.append(none)
    try plainRun.run()
    #expect(none.fewestZeros == [0, 0, 0, 0])
  }
}
