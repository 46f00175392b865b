import Engine
import Families
import NN
import Testing

@Suite("Model zoo")
struct ModelTests {
  @Test(
    "prunable-weight counts on the native input",
    arguments: [
      ("mnist_lenet_300_100", 266_200, 266_610), ("mnist_lenet5", 430_500, 431_080),
      ("cifar_conv_2", 4_300_992, 4_301_642),
      ("cifar_conv_4", 2_425_024, 2_425_930), ("cifar_conv_6", 2_261_184, 2_262_602),
      ("cifar_resnet_20", 270_896, 272_474),
    ])
  func counts(_ a: (String, Int, Int)) throws {
    let net: Network<Float> = try ModelZoo.make(a.0)
    #expect(net.prunableCount == a.1)
    #expect(net.parameterCount == a.2)
  }

  @Test("state_dict names and prunability") func names() throws {
    let resnet: Network<Float> = try ModelZoo.make("cifar_resnet_20")
    let names = resnet.parameters.map(\.0)
    #expect(names.first == "conv.weight")
    #expect(names.contains("blocks.0.conv1.weight"))
    #expect(names.contains("blocks.3.shortcut.0.weight"))
    #expect(names.contains("blocks.3.shortcut.1.bias"))
    #expect(names.last == "fc.bias")
    #expect(resnet.buffers.map(\.0).contains("blocks.8.bn2.running_var"))
    #expect(resnet.prunableParameters.allSatisfy { $0.0.hasSuffix("weight") && $0.1.value.shape.count >= 2 })
    #expect(!resnet.prunableParameters.map(\.0).contains("bn.weight"))
    let lenet: Network<Float> = try ModelZoo.make("mnist_lenet_300_100")
    #expect(
      lenet.parameters.map(\.0) == [
        "fc_layers.0.weight", "fc_layers.0.bias", "fc_layers.1.weight", "fc_layers.1.bias", "fc.weight",
        "fc.bias",
      ])
    #expect(lenet.parameter("fc_layers.0.weight")!.value.shape == [300, 784])
  }

  @Test("unknown names and impossible depths give clear errors") func badNames() {
    for bad in [
      "resnet_20", "cifar_resnet_21", "cifar_conv_3", "mnist_lenet_", "mnist_lenet_0", "cifar_vgg_12", "foo",
    ] {
      #expect(throws: EngineError.self) { let _: Network<Float> = try ModelZoo.make(bad) }
    }
    do { let _: Network<Float> = try ModelZoo.make("cifar_resnet_21") } catch {
      #expect("\(error)".contains("(D - 2) % 6 == 0"))
    }
    do { let _: Network<Float> = try ModelZoo.make("nope") } catch {
      #expect("\(error)".contains("mnist_lenet_N1_N2"))
    }
  }

  @Test("a mismatched input shape names what was expected") func badInput() throws {
    let net: Network<Float> = try ModelZoo.make("mnist_lenet_300_100")
    do {
      _ = try net.forward(Tensor(zeros: [2, 3, 32, 32]))
      Issue.record("expected an error")
    } catch {
      #expect("\(error)".contains("expected input [N, 1, 28, 28]"))
    }
  }

  @Test("initialisers have the documented standard deviations") func initStats() throws {
    let net: Network<Double> = try ModelZoo.make("mnist_lenet_300_100", as: Double.self)
    net.initialize(seed: 5, weights: .kaimingNormal)
    let w = net.parameter("fc_layers.0.weight")!.value.array
    let std = (w.map { $0 * $0 }.reduce(0, +) / Double(w.count)).squareRoot()
    #expect(abs(std - (2.0 / 784).squareRoot()) / (2.0 / 784).squareRoot() < 0.02)
    net.initialize(seed: 5, weights: .glorotUniform)
    let u = net.parameter("fc_layers.1.weight")!.value.array
    let bound = (6.0 / 400).squareRoot()
    #expect(u.allSatisfy { abs($0) <= bound } && u.contains { abs($0) > 0.9 * bound })
    let resnet: Network<Double> = try ModelZoo.make("cifar_resnet_8", as: Double.self)
    resnet.initialize(seed: 1, weights: .kaimingNormal, batchNorm: .uniform)
    let g = resnet.parameter("bn.weight")!.value.array
    #expect(g.allSatisfy { $0 >= 0 && $0 < 1 } && Set(g).count > 1)
    #expect(resnet.parameter("bn.bias")!.value.array.allSatisfy { $0 == 0 })
  }
}
