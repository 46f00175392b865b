import Engine
import NN
import Pruning

/// `mnist_lenet5[_wF]`: LeNet-5 as in Caffe's MNIST example, the convolutional network of
/// the SNIP paper's MNIST tables: a 5x5 convolution of 20 channels, a 2x2 max-pool, a 5x5
/// convolution of 50, a 2x2 max-pool, fc 500 and the output layer, with ReLU after each
/// hidden layer (`conv_layers.0`, `conv_layers.1`, `fc_layers.0`, `fc`); 431,080 parameters
/// on 28x28 inputs.
///
/// Recipe: LotteryKit's choice, not a paper's: LeNet-300-100's lottery recipe (Adam 1.2e-3,
/// batch 60, 50,000 iterations, Glorot normal), pruned layerwise 20% per level,
/// convolutions 10% and the output layer 10% as Conv-N.
///
/// This family was added as one file plus one line in ``ModelZoo/all``, which is the
/// whole recipe for a new family (see `docs/architecture.md`).
public struct LeNet5: ModelFamily {
  public init() {}
  public let name = "mnist_lenet5"
  public let grammar = "mnist_lenet5"
  public let examples = ["mnist_lenet5"]
  public let nativeInput = [1, 28, 28]
  public let defaultDataset = "fashion_mnist"
  public var takesWidthSuffix: Bool { true }
  public func matches(_ name: String) -> Bool { name == "mnist_lenet5" }

  public func body<T: Scalar>(_ name: String, widthFactor: Double, input: [Int], classes: Int) throws -> Module<T> {
    guard matches(name) else { throw unknown(name) }
    let (c1, c2, f1) = (
      ModelZoo.scaledWidth(20, widthFactor), ModelZoo.scaledWidth(50, widthFactor),
      ModelZoo.scaledWidth(500, widthFactor)
    )
    // Two valid 5x5 convolutions, each followed by a 2x2 pool.
    var (h, w) = (input[1], input[2])
    for _ in 0..<2 {
      (h, w) = ((h - 4) / 2, (w - 4) / 2)
      guard h > 0, w > 0 else { throw EngineError("\(name): input \(input) is too small for LeNet-5") }
    }
    return Sequential(named: [
      ("conv_layers.0", Conv2d(input[0], c1, kernelSize: 5)), ("relu_c0", ReLU()), ("pool0", MaxPool2d(2)),
      ("conv_layers.1", Conv2d(c1, c2, kernelSize: 5)), ("relu_c1", ReLU()), ("pool1", MaxPool2d(2)),
      ("flatten", Flatten()), ("fc_layers.0", Linear(c2 * h * w, f1)), ("relu_f0", ReLU()),
      ("fc", Linear(f1, classes)),
    ])
  }

  public func recipe(_ name: String) -> Recipe {
    var r = LeNet().recipe(name)
    r.pruning = PruningPolicy(strategy: .layerwise, fraction: 0.2, convFraction: 0.1, outputFraction: 0.1)
    return r
  }

  public func scaled(_ name: String, widthFactor: Double) throws -> String {
    try ConvN().scaled(name, widthFactor: widthFactor)
  }

  public let benchBatchSize = 60
  public func benchOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float> {
    try LeNet().benchOptimizer(net)
  }

  /// Two convolutions and two linear layers.
  public func lawDepth(_ name: String) -> Double { 4 }
}
