import Engine
import NN
import Pruning

/// `mnist_lenet_N1_N2...`: fully connected layers of widths `N1, N2, ...` with ReLU, then
/// the output layer (`fc_layers.K`, `fc`). LeNet-300-100 is the lottery-ticket paper's
/// MNIST network. Recipe: Adam 1.2e-3, batch 60, 50,000 iterations, Glorot normal; pruned
/// layerwise 20% per level, the output layer 10%.
public struct LeNet: ModelFamily {
  public init() {}
  public let name = "mnist_lenet"
  public let grammar = "mnist_lenet_N1_N2..."
  public let examples = ["mnist_lenet_300_100"]
  public let nativeInput = [1, 28, 28]
  public let defaultDataset = "fashion_mnist"
  public func matches(_ name: String) -> Bool { name.hasPrefix("mnist_lenet_") && numbers(name) != nil }

  public func body<T: Scalar>(_ name: String, widthFactor: Double, input: [Int], classes: Int) throws -> Module<T> {
    guard let hidden = numbers(name) else { throw unknown(name) }
    return Self.lenet(hidden: hidden, input: input, classes: classes)
  }

  public func recipe(_ name: String) -> Recipe {
    Recipe(
      initializer: .glorotNormal, batchNormInit: .ones, optimizer: .adam, learningRate: 1.2e-3,
      momentum: 0, weightDecay: 0, batchSize: 60, trainingSteps: "50000it", schedule: .constant,
      milestones: [], gamma: 0.1,
      pruning: PruningPolicy(strategy: .layerwise, fraction: 0.2, outputFraction: 0.1))
  }

  public func scaled(_ name: String, widthFactor: Double) throws -> String {
    guard let hidden = numbers(name) else { throw unknown(name) }
    return "mnist_lenet_" + hidden.map { String(ModelZoo.scaledWidth($0, widthFactor)) }.joined(separator: "_")
  }

  public let benchBatchSize = 60
  public func benchOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float> {
    try Adam(net.parameters, learningRate: 1.2e-3)
  }

  /// The number of linear layers.
  public func lawDepth(_ name: String) -> Double { Double((numbers(name)?.count ?? 0) + 1) }

  static func lenet<T: Scalar>(hidden: [Int], input: [Int], classes: Int) -> Module<T> {
    var layers: [(String, Module<T>)] = [("flatten", Flatten())]
    var width = input.reduce(1, *)
    for (i, h) in hidden.enumerated() {
      layers.append(("fc_layers.\(i)", Linear(width, h)))
      layers.append(("relu\(i)", ReLU()))
      width = h
    }
    layers.append(("fc", Linear(width, classes)))
    return Sequential(named: layers)
  }
}
