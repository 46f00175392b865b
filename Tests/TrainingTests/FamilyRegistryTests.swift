import Datasets
import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing
import Training

/// Walks the model-family registry: a family added as one file plus its registry line is
/// checked here without any test of its own.
@Suite("Model families: the registry is complete")
struct FamilyRegistryTests {
  @Test("every family parses its names, builds, trains a step, round-trips through safetensors, and has a recipe")
  func everyFamily() throws {
    #expect(Set(ModelZoo.all.map(\.name)).count == ModelZoo.all.count, "two families share a name")
    for family in ModelZoo.all {
      #expect(!family.examples.isEmpty, "\(family.name)")
      #expect(DatasetCatalog.names.contains(family.defaultDataset), "\(family.name)")
      #expect(ModelZoo.knownPatterns.contains(family.grammar))
      for name in family.examples {
        // The name belongs to this family and no other.
        #expect(ModelZoo.all.filter { $0.matches(name) }.count == 1, "\(name)")
        #expect(try ModelZoo.family(of: name).name == family.name)
        let recipe = try Recipe.forModel(name)
        #expect(recipe.batchSize > 0 && recipe.learningRate > 0, "\(name)")
        #expect(recipe.pruning.fraction > 0 && recipe.pruning.fraction < 1, "\(name)")
        // A scaled name stays in the family.
        let half = try ModelZoo.scaled(name, widthFactor: 0.5)
        #expect(try ModelZoo.family(of: half).name == family.name, "\(half)")
        // Build at a small input (the families adapt to the data set's shape), train one step.
        let shape = family.nativeInput[0] == 1 ? [1, 16, 16] : [3, 32, 32]
        let net: Network<Float> = try ModelZoo.make(half, inputShape: shape, classes: 4)
        net.initialize(seed: 1, weights: recipe.initializer)
        let opt = try family.benchOptimizer(net)
        let before = net.parameters.map { $0.1.value.array }
        let x = Tensor<Float>((0..<(2 * shape.reduce(1, *))).map { Float(($0 * 7919) % 17) / 17 }, shape: [2] + shape)
        let r = try net.lossAndGradients(input: x, labels: [1, 3])
        opt.step()
        #expect(r.loss.isFinite, "\(half)")
        #expect(net.parameters.map { $0.1.value.array } != before, "\(half): one step changed nothing")
        // Safetensors round trip into a fresh network of the same name.
        let path = CLI.tempDir() + "/model.safetensors"
        try ModelState.save(net, step: 1, to: path)
        let copy: Network<Float> = try ModelZoo.make(half, inputShape: shape, classes: 4)
        try ModelState.load(copy, from: path)
        #expect(copy.parameters.map { $0.1.value.array } == net.parameters.map { $0.1.value.array }, "\(half)")
        #expect(copy.buffers.map { $0.1.array } == net.buffers.map { $0.1.array }, "\(half)")
      }
    }
  }

  @Test("scaling-sweep depths come from the family files")
  func depths() throws {
    #expect(try ResNet().model(depth: 20) == "cifar_resnet_20")
    #expect(throws: EngineError.self) { try ResNet().model(depth: 21) }
    #expect(try VGG().model(depth: 16) == "cifar_vgg_16")
    #expect(try ConvN().model(depth: 4) == "cifar_conv_4")
    #expect(try LeNet().model(depth: 3) == nil)
    for f in ModelZoo.all {
      // A family with a depth knob builds its base model at some depth; one without has none.
      let some = (1...40).compactMap { try? f.model(depth: $0) }
      #expect(some.isEmpty != f.hasDepthKnob, "\(f.name)")
      for m in some { #expect(try ModelZoo.family(of: m).name == f.name, "\(m)") }
    }
    #expect(throws: EngineError.self) { try ModelZoo.family(of: "cifar_alexnet") }
  }
}
