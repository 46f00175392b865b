import Engine
import Families
import NN
import Pruning
import Testing

@Suite("Recipes, schedules and step strings")
struct ScheduleTests {
  @Test("step strings") func steps() throws {
    #expect(try StepSpec(parsing: "2000it") == StepSpec(iterations: 2000))
    #expect(try StepSpec(parsing: "2ep") == StepSpec(epochs: 2))
    #expect(try StepSpec(parsing: "1ep500it") == StepSpec(epochs: 1, iterations: 500))
    #expect(try StepSpec(parsing: "1ep500it").iterations(perEpoch: 1000) == 1500)
    #expect(StepSpec(epochs: 3, iterations: 2).description == "3ep2it")
    for bad in ["3xx", "-2ep", "", "ep", "it", "2", "1.5ep", "2it3ep", "ep5it", " 2 ep"] {
      #expect(throws: EngineError.self, "\(bad)") { try StepSpec(parsing: bad) }
    }
  }

  @Test("schedules at their boundaries") func schedules() throws {
    let step = try LearningRateSchedule(base: 0.1, kind: .step, milestones: [100, 200], gamma: 0.1)
    #expect(step(0) == 0.1 && step(99) == 0.1)
    #expect(abs(step(100) - 0.01) < 1e-15 && abs(step(199) - 0.01) < 1e-15)
    #expect(abs(step(200) - 0.001) < 1e-15)
    let warm = try LearningRateSchedule(base: 0.4, kind: .step, milestones: [10], gamma: 0.5, warmupSteps: 4)
    #expect(warm(0) == 0.1 && warm(1) == 0.2 && warm(3) == 0.4 && warm(4) == 0.4 && warm(10) == 0.2)
    let cos = try LearningRateSchedule(base: 1, kind: .cosine, totalSteps: 100)
    #expect(cos(0) == 1 && abs(cos(50) - 0.5) < 1e-12 && abs(cos(100)) < 1e-12)
    #expect(try LearningRateSchedule(base: 0.3)(12345) == 0.3)
    #expect(throws: EngineError.self) { try LearningRateSchedule(base: 0) }
    #expect(throws: EngineError.self) { try LearningRateSchedule(base: -1) }
    #expect(throws: EngineError.self) { try LearningRateSchedule(base: 1, milestones: [5, 3]) }
  }

  @Test("recipes follow the reference table (docs/REFERENCE.md)") func recipes() throws {
    let lenet = try Recipe.forModel("mnist_lenet_300_100")
    #expect(lenet.optimizer == .adam && lenet.learningRate == 1.2e-3 && lenet.batchSize == 60)
    #expect(lenet.trainingSteps == "50000it" && lenet.initializer == .glorotNormal)
    #expect(lenet.pruning == PruningPolicy(strategy: .layerwise, fraction: 0.2, outputFraction: 0.1))
    let c2 = try Recipe.forModel("cifar_conv_2")
    #expect(c2.learningRate == 2e-4 && c2.trainingSteps == "20000it" && c2.pruning.convFraction == 0.1)
    let c4 = try Recipe.forModel("cifar_conv_4")
    #expect(c4.learningRate == 3e-4 && c4.trainingSteps == "25000it" && c4.pruning.convFraction == 0.1)
    let c6 = try Recipe.forModel("cifar_conv_6")
    #expect(c6.learningRate == 3e-4 && c6.trainingSteps == "30000it" && c6.pruning.convFraction == 0.15)
    let r = try Recipe.forModel("cifar_resnet_20")
    #expect(r.optimizer == .sgd && r.momentum == 0.9 && r.weightDecay == 1e-4 && r.batchSize == 128)
    #expect(r.trainingSteps == "160ep" && r.milestones == ["80ep", "120ep"] && r.schedule == .step)
    #expect(r.initializer == .kaimingNormal && r.batchNormInit == .uniform)
    #expect(r.pruning.strategy == .global && r.pruning.outputFraction == nil)
    #expect(try Recipe.forModel("cifar_vgg_16").pruning.outputFraction == 0)
    #expect(throws: EngineError.self) { try Recipe.forModel("imagenet_resnet_50") }
  }

  @Test("models adapt to the input shape and class count") func adapt() throws {
    let c2: Network<Float> = try ModelZoo.make("cifar_conv_2", inputShape: [1, 28, 28], classes: 10)
    #expect(c2.parameter("fc_layers.0.weight")!.value.shape == [256, 64 * 14 * 14])
    let r: Network<Float> = try ModelZoo.make("cifar_resnet_20", inputShape: [1, 28, 28], classes: 100)
    #expect(r.parameter("fc.weight")!.value.shape == [100, 64])
    _ = try r.forward(Tensor(zeros: [2, 1, 28, 28]))
    let v: Network<Float> = try ModelZoo.make("cifar_vgg_11", inputShape: [1, 28, 28])
    #expect(try v.forward(Tensor(zeros: [2, 1, 28, 28])).shape == [2, 10])
    let w: Network<Float> = try ModelZoo.make("cifar_resnet_14_32")
    #expect(w.parameter("fc.weight")!.value.shape == [10, 128])
  }
}

@Suite("Step strings: fuzzing regressions")
struct StepStringEdgeTests {
  @Test("control characters stay escaped in the one-line error")
  func controlCharacters() {
    // libFuzzer input (FuzzSteps): seven NUL bytes and a carriage return.
    let input = String(decoding: [0, 0, 0, 0, 0, 0, 0, 13] as [UInt8], as: UTF8.self)
    do {
      _ = try StepSpec(parsing: input)
      Issue.record("parsed")
    } catch {
      #expect(
        "\(error)".hasPrefix(#"invalid step '\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\r': write"#), "\(error)")
    }
    #expect(throws: EngineError.self) { try StepSpec(parsing: "2ep\n3it") }
  }

  @Test("iteration counts that overflow are an error, not a trap")
  func overflow() throws {
    let s = try StepSpec(parsing: "9223372036854775807ep")
    #expect(throws: EngineError.self) { try s.iterations(perEpoch: 2) }
    #expect(throws: EngineError.self) {
      try StepSpec(parsing: "1ep9223372036854775807it").iterations(perEpoch: 1)
    }
    #expect(try s.iterations(perEpoch: 1) == Int.max)
    #expect(throws: EngineError.self) { try StepSpec(parsing: "99999999999999999999it") }
  }
}
