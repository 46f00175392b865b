import Engine

/// How a family is pruned per IMP level (read by the pruning code).
public struct PruningPolicy: Equatable, Sendable, Codable {
  public enum Strategy: String, Sendable, Codable, CaseIterable { case global, layerwise }
  public var strategy: Strategy
  /// Fraction of the remaining weights pruned per level (default for every tensor).
  public var fraction: Double
  /// Fraction for convolution weights (nil: `fraction`).
  public var convFraction: Double?
  /// Fraction for the output layer (nil: `fraction`; 0 never prunes it).
  public var outputFraction: Double?
  /// Tensor names (simple `*` wildcards) never pruned.
  public var ignore: [String]

  public init(
    strategy: Strategy, fraction: Double, convFraction: Double? = nil, outputFraction: Double? = nil,
    ignore: [String] = []
  ) {
    self.strategy = strategy
    self.fraction = fraction
    self.convFraction = convFraction
    self.outputFraction = outputFraction
    self.ignore = ignore
  }
}

/// A family's default training recipe: the paper's where the paper gives one, OpenLTH's
/// otherwise (the table "Default recipes LotteryKit uses" in docs/REFERENCE.md). Every field can be
/// overridden from the command line.
public struct Recipe: Equatable, Sendable {
  public enum OptimizerKind: String, Sendable, Codable, CaseIterable { case sgd, adam }
  public var initializer: Initializer
  public var batchNormInit: BatchNormInit
  public var optimizer: OptimizerKind
  public var learningRate: Double
  public var momentum: Double
  public var weightDecay: Double
  public var batchSize: Int
  public var trainingSteps: StepSpec
  public var schedule: LearningRateSchedule.Kind
  public var milestones: [StepSpec]
  public var gamma: Double
  public var pruning: PruningPolicy

  /// The recipe for a model name, or an error listing the families.
  public static func forModel(_ fullName: String) throws -> Recipe {
    // A width factor (`_wF`) changes widths, not the recipe.
    let name = ModelZoo.splitWidth(fullName).base
    let conv = PruningPolicy.self
    if name.hasPrefix("mnist_lenet_") {
      return Recipe(
        initializer: .glorotNormal, batchNormInit: .ones, optimizer: .adam, learningRate: 1.2e-3,
        momentum: 0, weightDecay: 0, batchSize: 60, trainingSteps: "50000it", schedule: .constant,
        milestones: [], gamma: 0.1,
        pruning: conv.init(strategy: .layerwise, fraction: 0.2, outputFraction: 0.1))
    }
    if name.hasPrefix("cifar_conv_") {
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
        pruning: conv.init(strategy: .layerwise, fraction: 0.2, convFraction: cf, outputFraction: 0.1))
    }
    if name.hasPrefix("cifar_resnet_") || name.hasPrefix("cifar_vgg_") {
      let vgg = name.hasPrefix("cifar_vgg_")
      return Recipe(
        initializer: .kaimingNormal, batchNormInit: .uniform, optimizer: .sgd, learningRate: 0.1,
        momentum: 0.9, weightDecay: 1e-4, batchSize: 128, trainingSteps: "160ep", schedule: .step,
        milestones: ["80ep", "120ep"], gamma: 0.1,
        pruning: conv.init(strategy: .global, fraction: 0.2, outputFraction: vgg ? 0 : nil))
    }
    throw EngineError(
      "unknown model '\(fullName)'; known: \(ModelZoo.knownPatterns)")
  }
}
