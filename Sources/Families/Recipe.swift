import Engine
import NN
import Pruning

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
  /// Random-crop and flip augmentation (nil: the data set's default, on for CIFAR). The LTH
  /// paper trained Conv-2/4/6 without it (Appendix H.1 gives their whole protocol, no
  /// augmentation) and VGG and ResNet with it.
  public var augment: Bool?
  /// Where IMP rewinds the surviving weights: `0it` (the LTH paper's LeNet and Conv-N), or
  /// `T/16`, a sixteenth of the training length (epoch 10 of 160, where Rosenfeld et al.'s
  /// sweeps rewound; past the early iterations from which the LTH and LMC papers found deep
  /// CIFAR networks stable), which scales with `--training-steps` and never passes its end.
  public var rewindStep: String

  public init(
    initializer: Initializer, batchNormInit: BatchNormInit, optimizer: OptimizerKind, learningRate: Double,
    momentum: Double, weightDecay: Double, batchSize: Int, trainingSteps: StepSpec,
    schedule: LearningRateSchedule.Kind, milestones: [StepSpec], gamma: Double, pruning: PruningPolicy,
    augment: Bool? = nil, rewindStep: String = "0it"
  ) {
    self.augment = augment
    self.rewindStep = rewindStep
    self.initializer = initializer
    self.batchNormInit = batchNormInit
    self.optimizer = optimizer
    self.learningRate = learningRate
    self.momentum = momentum
    self.weightDecay = weightDecay
    self.batchSize = batchSize
    self.trainingSteps = trainingSteps
    self.schedule = schedule
    self.milestones = milestones
    self.gamma = gamma
    self.pruning = pruning
  }
}
