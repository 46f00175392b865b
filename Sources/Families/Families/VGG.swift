import Engine
import NN
import Pruning

/// `cifar_vgg_11/13/16/19[_wF]`: VGG with batch norm, a global average pool and a single fc
/// (OpenLTH's CIFAR VGG: `layers.K.conv`, `layers.K.bn`, `fc`). Recipe as ResNet's (SGD 0.1,
/// 160 epochs); pruned globally 20% per level, the output layer never.
public struct VGG: ModelFamily {
  public init() {}
  public let name = "cifar_vgg"
  public let grammar = "cifar_vgg_11, cifar_vgg_13, cifar_vgg_16, cifar_vgg_19"
  public let examples = ["cifar_vgg_11", "cifar_vgg_13", "cifar_vgg_16", "cifar_vgg_19"]
  public let nativeInput = [3, 32, 32]
  public let defaultDataset = "cifar10"
  public var takesWidthSuffix: Bool { true }
  public func matches(_ name: String) -> Bool {
    name.hasPrefix("cifar_vgg_") && numbers(name).map { $0.count == 1 && Self.vggPlans[$0[0]] != nil } == true
  }

  public func body<T: Scalar>(_ name: String, widthFactor: Double, input: [Int], classes: Int) throws -> Module<T> {
    guard let n = numbers(name)?.first, let plan = Self.vggPlans[n] else { throw unknown(name) }
    return try Self.vgg(
      plan: plan.map { $0 == 0 ? 0 : ModelZoo.scaledWidth($0, widthFactor) }, input: input, classes: classes)
  }

  public func recipe(_ name: String) -> Recipe {
    var r = ResNet().recipe(name)
    r.pruning = PruningPolicy(strategy: .global, fraction: 0.2, outputFraction: 0)
    return r
  }

  public func scaled(_ name: String, widthFactor: Double) throws -> String {
    try ConvN().scaled(name, widthFactor: widthFactor)
  }

  public let benchBatchSize = 128
  public func benchOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float> {
    try ResNet().benchOptimizer(net)
  }

  public var hasDepthKnob: Bool { true }
  public func model(depth d: Int) throws -> String? {
    guard Self.vggPlans[d] != nil else { throw EngineError("cifar_vgg has depths 11, 13, 16 and 19, got \(d)") }
    return "cifar_vgg_\(d)"
  }
  /// N of VGG-N.
  public func lawDepth(_ name: String) -> Double { Double(numbers(ModelZoo.splitWidth(name).base)?.first ?? 0) }

  static let vggPlans: [Int: [Int]] = [
    11: [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512],
    13: [64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512],
    16: [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512],
    19: [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512],
  ]

  /// OpenLTH's CIFAR VGG: `layers.K.conv` (3x3, bias) + `layers.K.bn` + ReLU, 2x2 max-pools
  /// (0 in the plan), then a global average pool and `fc`.
  static func vgg<T: Scalar>(plan: [Int], input: [Int], classes: Int) throws -> Module<T> {
    var layers: [(String, Module<T>)] = []
    var (c, h) = (input[0], min(input[1], input[2]))
    var k = 0
    for spec in plan {
      if spec == 0 {
        h /= 2
        guard h > 0 else {
          throw EngineError("cifar_vgg: input \(input) is too small for the pooling stages")
        }
        layers.append(("pool\(k)", MaxPool2d(2)))
      } else {
        layers.append(("layers.\(k).conv", Conv2d(c, spec, kernelSize: 3, padding: 1)))
        layers.append(("layers.\(k).bn", BatchNorm(spec)))
        layers.append(("relu\(k)", ReLU()))
        c = spec
        k += 1
      }
    }
    layers.append(("pool", GlobalAvgPool2d()))
    layers.append(("fc", Linear(c, classes)))
    return Sequential(named: layers)
  }
}
