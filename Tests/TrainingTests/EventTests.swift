import Datasets
import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing
import Training

/// A toy speed-up method: on `afterLoss` it scales the loss's gradient by a factor drawn
/// from its own random stream (`low ..< high`), and it keeps the sum of the factors it
/// drew as checkpointed state (a tensor) plus a count (a metadata value).
final class ToyGradientScale: TrainingCallback {
  let name = "toy_scale"
  let events: Set<TrainingEvent> = [.afterLoss]
  let low: Double
  let high: Double
  let drawn = Tensor<Float>(zeros: [1])
  var count = 0
  init(_ low: Double, _ high: Double) {
    self.low = low
    self.high = high
  }
  func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    var r = state.random(for: self)
    let f = Float(r.uniform(low, high))
    for i in 0..<state.dLogits.count { state.dLogits[i] *= f }
    drawn[0] += f
    count += 1
  }
  var stateTensors: [(String, Tensor<Float>)] { [("drawn", drawn)] }
  var stateValues: [String: String] {
    get { ["count": String(count)] }
    set { count = Int(newValue["count"] ?? "0") ?? 0 }
  }
}

/// Records the events it gets (all of them), and throws at a given step to interrupt a run.
final class EventRecorder: TrainingCallback {
  let name: String
  let events = Set(TrainingEvent.allCases)
  var log: [(TrainingEvent, String)]
  var stopAt: Int?
  init(_ name: String, log: [(TrainingEvent, String)] = []) {
    self.name = name
    self.log = log
  }
  func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    log.append((event, name))
    if let s = stopAt, event == .batchEnd, state.step == s { throw RunError("interrupted at \(s)") }
  }
}

@Suite("Training events and callbacks")
struct EventTests {
  static let shape = [1, 12, 12]
  static let data = Synthetic.make(count: 120, shape: shape, classes: 10, seed: 9)

  static func trainer(_ dir: String, lastStep: Int, callbacks: [any TrainingCallback]) throws -> Trainer {
    let net: Network<Float> = try ModelZoo.make("mnist_lenet_80_40", inputShape: shape, classes: 10)
    net.initialize(seed: 3, weights: .kaimingNormal)
    let t = try Trainer(
      network: net, optimizer: try Adam(net.parameters, learningRate: 1e-3),
      loader: try BatchLoader(dataset: data, batchSize: 20, seed: 1, augment: false),
      evalSets: [("test", data)], firstStep: 0, lastStep: lastStep, evalEvery: 4,
      learningRate: { _ in 1e-3 }, directory: dir, progress: .quiet)
    t.callbacks = callbacks
    t.seed = 11
    return t
  }

  static func weights(_ t: Trainer) -> [[Float]] { t.network.parameters.map { $0.1.value.array } }

  @Test("events arrive in order; closing events run the callbacks in reverse")
  func order() throws {
    let a = EventRecorder("a")
    let b = EventRecorder("b")
    let t = try Self.trainer(CLI.tempDir(), lastStep: 7, callbacks: [a, b])
    try t.run()
    // 120 examples at batch 20: 6 steps an epoch.
    let events = a.log.map(\.0)
    #expect(events.first == .runStart && events.last == .runEnd)
    let step: [TrainingEvent] = [
      .batchLoaded, .beforeForward, .afterForward, .beforeLoss, .afterLoss, .beforeBackward, .afterBackward,
      .beforeOptimizerStep, .afterOptimizerStep, .batchEnd,
    ]
    let firstStep = Array(events.drop { $0 != .batchLoaded }.prefix(step.count))
    #expect(firstStep == step)
    #expect(events.filter { $0 == .batchEnd }.count == 7)
    #expect(events.filter { $0 == .epochStart }.count == 2)  // steps 0 and 6
    #expect(events.filter { $0 == .epochEnd }.count == 2)  // after steps 6 and 7 (the last)
    // Evaluations at steps 0, 4 and 7, one split each; checkpoints at 0, 6 and 7.
    #expect(events.filter { $0 == .evaluationStart }.count == 3)
    #expect(events.filter { $0 == .checkpoint }.count == 3)
    // One shared log: "before" events run a then b, "after" events b then a.
    let shared = EventRecorder("x")
    let c = EventRecorder("c")
    let d = EventRecorder("d")
    let t2 = try Self.trainer(CLI.tempDir(), lastStep: 1, callbacks: [c, d, shared])
    try t2.run()
    func who(_ e: TrainingEvent) -> [String] {
      (c.log + d.log).filter { $0.0 == e }.map(\.1)
    }
    #expect(who(.beforeForward) == ["c", "d"])
    // Each recorder has its own log: order across them shows in the order of the merged list
    // only with one log, so check reversal through a callback that writes to a shared list.
    final class Shared: TrainingCallback {
      let name: String
      let events: Set<TrainingEvent> = [.beforeLoss, .afterLoss]
      let sink: (String) -> Void
      init(_ n: String, _ s: @escaping (String) -> Void) {
        name = n
        sink = s
      }
      func handle(_ event: TrainingEvent, _ state: TrainingState) throws { sink("\(name):\(event)") }
    }
    var seen: [String] = []
    let t3 = try Self.trainer(
      CLI.tempDir(), lastStep: 1, callbacks: [Shared("p") { seen.append($0) }, Shared("q") { seen.append($0) }])
    try t3.run()
    #expect(seen == ["p:beforeLoss", "q:beforeLoss", "q:afterLoss", "p:afterLoss"])
  }

  @Test("a callback that scales the loss's gradient has the expected effect")
  func effect() throws {
    // Factor 1: bit-identical to no callback.
    let plain = try Self.trainer(CLI.tempDir(), lastStep: 8, callbacks: [])
    try plain.run()
    let one = try Self.trainer(CLI.tempDir(), lastStep: 8, callbacks: [ToyGradientScale(1, 1)])
    try one.run()
    #expect(Self.weights(one) == Self.weights(plain))
    // Factor 0: no gradient, so Adam leaves every weight where it started.
    let zero = try Self.trainer(CLI.tempDir(), lastStep: 8, callbacks: [ToyGradientScale(0, 0)])
    let start = Self.weights(zero)
    try zero.run()
    #expect(Self.weights(zero) == start)
    // Random factors: the run differs from the plain one, and is the same when repeated.
    let r1 = try Self.trainer(CLI.tempDir(), lastStep: 8, callbacks: [ToyGradientScale(0.2, 0.6)])
    try r1.run()
    let r2 = try Self.trainer(CLI.tempDir(), lastStep: 8, callbacks: [ToyGradientScale(0.2, 0.6)])
    try r2.run()
    #expect(Self.weights(r1) != Self.weights(plain))
    #expect(Self.weights(r1) == Self.weights(r2))
  }

  @Test("a callback's state survives an interrupted run: resumed, it ends bit-identical")
  func resume() throws {
    let whole = ToyGradientScale(0.2, 1.5)
    let dirA = CLI.tempDir()
    let a = try Self.trainer(dirA, lastStep: 16, callbacks: [whole])
    try a.run()
    #expect(whole.count == 16)
    for stop in [3, 6, 10] {
      let dir = CLI.tempDir()
      // Killed at step `stop`: the process's state is lost, the checkpoint (written at the
      // last epoch boundary, every 6 steps) stays.
      let killer = EventRecorder("killer")
      killer.stopAt = stop
      let first = try Self.trainer(dir, lastStep: 16, callbacks: [ToyGradientScale(0.2, 1.5), killer])
      #expect(throws: RunError.self) { try first.run() }
      let again = ToyGradientScale(0.2, 1.5)
      let second = try Self.trainer(dir, lastStep: 16, callbacks: [again, EventRecorder("killer")])
      try second.run()
      #expect(Self.weights(second) == Self.weights(a), "interrupted at \(stop)")
      #expect(again.drawn[0] == whole.drawn[0] && again.count == whole.count, "interrupted at \(stop)")
      for f: RunFile in [.checkpoint, .metrics] {
        let x = FileManager.default.contents(atPath: f.path(in: dir))
        let y = FileManager.default.contents(atPath: f.path(in: dirA))
        if f == .checkpoint { #expect(x == y, "\(f.rawValue), interrupted at \(stop)") }
      }
    }
  }

  @Test("model surgery on initialize: a callback can replace the network before training")
  func surgery() throws {
    final class Replace: TrainingCallback {
      let name = "replace"
      let events: Set<TrainingEvent> = [.initialize]
      func handle(_ event: TrainingEvent, _ state: TrainingState) throws {}
      func initialize(_ network: Network<Float>) throws -> Network<Float> {
        try ModelZoo.make("mnist_lenet_16_8", inputShape: network.inputShape, classes: network.classes)
      }
    }
    let net: Network<Float> = try ModelZoo.make("mnist_lenet_80_40", inputShape: Self.shape, classes: 10)
    let out = try Trainer.initialize(network: net, callbacks: [Replace()])
    #expect(out.name == "mnist_lenet_16_8")
  }
}

extension EventTests {
  @Test("on batchEnd the evaluation comes before the checkpoint (a checkpoint never precedes its metrics)")
  func evaluationBeforeCheckpoint() throws {
    final class Watch: TrainingCallback {
      let name = "watch"
      let events: Set<TrainingEvent> = [.checkpoint]
      var missing: [Int] = []
      let every: Int
      init(every: Int) { self.every = every }
      func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
        // At an evaluation step, the checkpoint must find that step's row already written.
        guard state.step % every == 0 else { return }
        let rows = try MetricsLog.parse(AtomicFile.read(RunFile.metrics.path(in: state.directory)), path: "")
        if !rows.contains(where: { $0.step == state.step }) { missing.append(state.step) }
      }
    }
    let w = Watch(every: 4)
    // Evaluations every 4 steps and epochs of 6: both at 12.
    let t = try Self.trainer(CLI.tempDir(), lastStep: 13, callbacks: [w])
    try t.run()
    #expect(w.missing.isEmpty, "checkpoints before their evaluation at steps \(w.missing)")
  }
}
