import Engine
import NN
import Pruning

/// `cifar_conv_2/4/6[_wF]`: the lottery-ticket paper's Conv-N, 3x3 same convolutions in
/// pairs of 64, 128, 256 with 2x2 max-pools, then fc 256, 256 and the output layer
/// (`conv_layers.K`, `fc_layers.K`, `fc`). Recipe: Adam (2e-4 for Conv-2, 3e-4 for Conv-4
/// and -6), batch 60, 20K/25K/30K iterations; pruned layerwise 20% per level,
/// convolutions 10% (Conv-6: 15%), the output layer 10%.
public struct ConvN: ModelFamily {
  public init() {}
  public let name = "cifar_conv"
  public let grammar = "cifar_conv_2, cifar_conv_4, cifar_conv_6"
  public let examples = ["cifar_conv_2", "cifar_conv_4", "cifar_conv_6"]
  public let nativeInput = [3, 32, 32]
  public let defaultDataset = "cifar10"
  public var takesWidthSuffix: Bool { true }
  public func matches(_ name: String) -> Bool {
    name.hasPrefix("cifar_conv_") && numbers(name).map { $0.count == 1 && [2, 4, 6].contains($0[0]) } == true
  }

  public func body<T: Scalar>(_ name: String, widthFactor: Double, input: [Int], classes: Int) throws -> Module<T> {
    guard let n = numbers(name)?.first else { throw unknown(name) }
    return try Self.convN(n, input: input, classes: classes, widthFactor: widthFactor)
  }

  public func recipe(_ name: String) -> Recipe {
    let (lr, steps, cf): (Double, StepSpec, Double) =
      switch name {
      case "cifar_conv_2": (2e-4, "20000it", 0.1)
      case "cifar_conv_4": (3e-4, "25000it", 0.1)
      default: (3e-4, "30000it", 0.15)
      }
    return Recipe(
      initializer: .glorotNormal, batchNormInit: .ones, optimizer: .adam, learningRate: lr,
      momentum: 0, weightDecay: 0, batchSize: 60, trainingSteps: steps, schedule: .constant,
      milestones: [], gamma: 0.1,
      pruning: PruningPolicy(strategy: .layerwise, fraction: 0.2, convFraction: cf, outputFraction: 0.1),
      augment: false)
  }

  public func scaled(_ name: String, widthFactor: Double) throws -> String {
    let (base, f) = ModelZoo.splitWidth(name)
    let total = f * widthFactor
    return total == 1 ? base : base + "_w" + ModelZoo.formatFactor(total)
  }

  public let benchBatchSize = 60
  public func benchOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float> {
    try Adam(net.parameters, learningRate: 2e-4)
  }

  public var hasDepthKnob: Bool { true }
  public func model(depth d: Int) throws -> String? {
    guard [2, 4, 6].contains(d) else { throw EngineError("cifar_conv has depths 2, 4 and 6, got \(d)") }
    return "cifar_conv_\(d)"
  }
  /// N of Conv-N.
  public func lawDepth(_ name: String) -> Double { Double(numbers(ModelZoo.splitWidth(name).base)?.first ?? 0) }

  static func convN<T: Scalar>(_ n: Int, input: [Int], classes: Int, widthFactor: Double = 1) throws
    -> Module<T>
  {
    var layers: [(String, Module<T>)] = []
    var (c, h, w) = (input[0], input[1], input[2])
    let widths = [64, 128, 256].prefix(n / 2).map { ModelZoo.scaledWidth($0, widthFactor) }
    var k = 0
    for width in widths {
      for _ in 0..<2 {
        layers.append(("conv_layers.\(k)", Conv2d(c, width, kernelSize: 3, padding: 1)))
        layers.append(("relu_c\(k)", ReLU()))
        c = width
        k += 1
      }
      layers.append(("pool\(k)", MaxPool2d(2)))
      (h, w) = (h / 2, w / 2)
      guard h > 0, w > 0 else {
        throw EngineError("cifar_conv_\(n): input \(input) is too small for \(n / 2) pooling stages")
      }
    }
    layers.append(("flatten", Flatten()))
    var width = c * h * w
    for (i, f) in [256, 256].map({ ModelZoo.scaledWidth($0, widthFactor) }).enumerated() {
      layers.append(("fc_layers.\(i)", Linear(width, f)))
      layers.append(("relu_f\(i)", ReLU()))
      width = f
    }
    layers.append(("fc", Linear(width, classes)))
    return Sequential(named: layers)
  }
}
