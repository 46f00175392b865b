import Engine
import NN
import Pruning

/// `cifar_resnet_D[_W]`: the CIFAR ResNet of depth `D` (`(D - 2) % 6 == 0`, `D >= 8`) with
/// stage widths `W, 2W, 4W` (default 16): `conv`, `bn`, `blocks.K` (basic blocks with
/// `shortcut` where the shape changes), `fc`. Recipe: SGD 0.1, momentum 0.9, weight decay
/// 1e-4, batch 128, 160 epochs, x0.1 at 80 and 120, Kaiming normal, batch-norm weights
/// U[0, 1); pruned globally 20% per level.
public struct ResNet: ModelFamily {
  public init() {}
  public let name = "cifar_resnet"
  public let grammar = "cifar_resnet_D, cifar_resnet_D_W"
  public let examples = ["cifar_resnet_20", "cifar_resnet_20_64"]
  public let nativeInput = [3, 32, 32]
  public let defaultDataset = "cifar10"
  public func matches(_ name: String) -> Bool {
    name.hasPrefix("cifar_resnet_") && numbers(name).map { $0.count == 1 || $0.count == 2 } == true
  }

  public func body<T: Scalar>(_ name: String, widthFactor: Double, input: [Int], classes: Int) throws -> Module<T> {
    guard let nums = numbers(name), nums.count == 1 || nums.count == 2 else { throw unknown(name) }
    let depth = nums[0]
    guard depth >= 8, (depth - 2) % 6 == 0 else {
      throw EngineError(
        "\(name): ResNet depth must satisfy (D - 2) % 6 == 0 and D >= 8 (20, 32, 44, 56, 110...), got \(depth)"
      )
    }
    return Self.resnet(depth: depth, width: nums.count == 2 ? nums[1] : 16, input: input, classes: classes)
  }

  public func recipe(_ name: String) -> Recipe {
    Recipe(
      initializer: .kaimingNormal, batchNormInit: .uniform, optimizer: .sgd, learningRate: 0.1,
      momentum: 0.9, weightDecay: 1e-4, batchSize: 128, trainingSteps: "160ep", schedule: .step,
      milestones: ["80ep", "120ep"], gamma: 0.1,
      pruning: PruningPolicy(strategy: .global, fraction: 0.2), rewindStep: "T/16")
  }

  public func scaled(_ name: String, widthFactor: Double) throws -> String {
    guard let nums = numbers(name), nums.count <= 2 else { throw unknown(name) }
    let width = nums.count == 2 ? nums[1] : 16
    return "cifar_resnet_\(nums[0])_\(ModelZoo.scaledWidth(width, widthFactor))"
  }

  public let benchBatchSize = 128
  public func benchOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float> {
    try SGD(net.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4)
  }

  public var hasDepthKnob: Bool { true }
  public func model(depth d: Int) throws -> String? {
    guard d >= 8, (d - 2) % 6 == 0 else {
      throw EngineError("cifar_resnet depths satisfy (D - 2) % 6 == 0 and D >= 8 (8, 14, 20, 32...), got \(d)")
    }
    return "cifar_resnet_\(d)"
  }
  /// D.
  public func lawDepth(_ name: String) -> Double { Double(numbers(name)?.first ?? 0) }

  static func resnet<T: Scalar>(depth: Int, width: Int, input: [Int], classes: Int) -> Module<T> {
    let perStage = (depth - 2) / 6
    var layers: [(String, Module<T>)] = [
      ("conv", Conv2d(input[0], width, kernelSize: 3, padding: 1, bias: false)),
      ("bn", BatchNorm(width)),
      ("relu", ReLU()),
    ]
    var c = width
    var b = 0
    for stage in 0..<3 {
      let out = width << stage
      for i in 0..<perStage {
        layers.append(("blocks.\(b)", BasicBlock(c, out, downsample: stage > 0 && i == 0)))
        c = out
        b += 1
      }
    }
    layers.append(("pool", GlobalAvgPool2d()))
    layers.append(("fc", Linear(c, classes)))
    return Sequential(named: layers)
  }
}
