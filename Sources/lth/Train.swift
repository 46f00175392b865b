import ArgumentParser
import Engine
import Experiments
import Families
import Foundation
import NN
import Training

/// Flags shared by every command that trains (`train`, `lottery`, `branch`). Unset flags
/// take the model family's recipe (see `Recipe` and docs/REFERENCE.md).
struct TrainingFlags: ParsableArguments {
  @Option(help: "Model name, e.g. mnist_lenet_300_100, cifar_conv_2, cifar_resnet_20 (see `lth models`).")
  var model: String
  @Option(
    help:
      "Scale every hidden layer's width by this factor (the model becomes e.g. mnist_lenet_150_50 or cifar_conv_2_w0.5)."
  )
  var widthFactor = 1.0
  @Option(help: "Data set: fashion_mnist, mnist, cifar10, cifar100, synthetic (default: the model family's).")
  var dataset: String?
  @Option(help: "Folder with the data set's files (default: see docs/guide-training.md, Data sets).") var dataDir: String?
  @Option(help: "Training length: 2000it, 2ep or 1ep500it.") var trainingSteps: String?
  @Option(help: "Batch size.") var batchSize: Int?
  @Option(help: "Optimizer: sgd or adam.") var optimizer: String?
  @Option(help: "Learning rate.") var lr: Double?
  @Option(help: "SGD momentum.") var momentum: Double?
  @Flag(help: "Nesterov momentum (SGD).") var nesterov = false
  @Option(help: "Weight decay (L2 added to the gradient).") var weightDecay: Double?
  @Option(help: "Linear warm-up length, e.g. 1ep.") var warmupSteps: String?
  @Option(help: "Step-decay milestones, comma separated, e.g. 80ep,120ep.") var milestones: String?
  @Option(help: "Step-decay factor.") var gamma: Double?
  @Option(help: "Schedule after warm-up: constant, step or cosine.") var schedule: String?
  @Option(help: "Initialiser: kaiming_normal, kaiming_uniform, glorot_normal, glorot_uniform.")
  var initializer: String?
  @Option(help: "Seed for initialisation (and data order unless --data-order-seed).") var seed: UInt64 = 0
  @Option(help: "Seed for data order and augmentation.") var dataOrderSeed: UInt64?
  @Option(help: "Examples held out of the training set for validation.") var validationSize = 0
  @Option(help: "Fraction of the training set to use, in (0, 1].") var subsampleFraction = 1.0
  @Option(help: "Fraction of training labels replaced by random ones, in [0, 1].") var randomLabelsFraction =
    0.0
  @Option(help: "Evaluate every S steps (default 1ep) and at the end.") var evalEvery: String?
  @Flag(help: "Also evaluate on the training set.") var evalTrain = false
  @Option(help: "Disable (false) or force (true) random-crop and flip augmentation.") var augment: Bool?
  @Option(help: "Worker threads (results do not depend on it).") var threads = MachineInfo.defaultThreads
  @Option(
    help:
      "Convolution backends: auto (oneDNN where it has a JIT kernel, Winograd for 3x3 stride-1 layers with >= 32 channels), im2col, or onednn (direct only)."
  )
  var convBackend = "auto"
  @Option(
    help:
      "Sparse kernels for pruned layers: auto (by a fixed rule on shape, density, batch and ISA; see docs/sparse-kernels.md), off (dense arithmetic on masked weights), or on (every pruned layer)."
  )
  var sparseKernels = "auto"
  @Option(help: "Output root for run folders.") var output = "./lth_runs"
  @Flag(
    name: .customLong("require-same-cpu"),
    help:
      "Refuse (one line, nothing changed) to continue a run recorded on a machine with another oneDNN ISA, BLAS core or convolution backends."
  )
  var requireSameCPU = false
  @Flag(help: "No progress output.") var quiet = false
  @Flag(help: "Make the last line of stdout one JSON object.") var json = false

  func resolve() throws -> TrainingHParams {
    var o = TrainingOverrides()
    o.dataset = dataset
    o.trainingSteps = trainingSteps
    o.batchSize = batchSize
    o.optimizer = optimizer
    o.lr = lr
    o.momentum = momentum
    o.nesterov = nesterov
    o.weightDecay = weightDecay
    o.warmupSteps = warmupSteps
    o.milestones = milestones.map { $0.split(separator: ",").map { String($0) } }
    o.gamma = gamma
    o.schedule = schedule
    o.convBackend = convBackend
    o.sparseKernels = sparseKernels
    o.initializer = initializer
    o.seed = seed
    o.dataOrderSeed = dataOrderSeed
    o.augment = augment
    o.validationSize = validationSize
    o.subsampleFraction = subsampleFraction
    o.randomLabelsFraction = randomLabelsFraction
    o.evalEvery = evalEvery
    o.evalTrain = evalTrain
    return try TrainingHParams.resolve(model: try ModelZoo.scaled(model, widthFactor: widthFactor), o)
  }

  /// Sets the thread count and makes SIGTERM a polite stop (see ``Training/StopSignal``):
  /// every command that trains calls it first.
  func applyThreads() throws {
    guard threads >= 1 else { throw EngineError("--threads must be at least 1, got \(threads)") }
    StopSignal.install()  // first: the worker pool's threads inherit its signal mask
    Parallel.threads = threads
  }

  var progress: ProgressStyle { quiet || json ? .quiet : .automatic }
}

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train one network; re-running the same command resumes it or reports the finished run.",
    discussion: """
      The run lives in <output>/train_<hash>, the hash taken over every resolved hyperparameter. \
      Continuing a run on a machine with another oneDNN ISA, BLAS core or convolution \
      backends prints one line on stderr and records it in \(RunFile.machineChanges.rawValue) \
      (--require-same-cpu: an error instead); continuing one that another LotteryKit build \
      last worked on prints a note too. \
      It holds \(RunFile.hparams.rawValue), \(RunFile.commands.rawValue) (the command line and build of every command that \
      worked on it), \(RunFile.metrics.rawValue), \(RunFile.metricsCSV.rawValue), \(RunFile.checkpoint.rawValue) (resumable), \
      \(RunFile.modelInit.rawValue), \(RunFile.modelFinal.rawValue) and \(RunFile.summary.rawValue).
      """)
  @OptionGroup var flags: TrainingFlags

  func run() throws {
    runOrFail {
      try flags.applyThreads()
      let h = try flags.resolve()
      let (s, done) = try TrainRunner.run(
        h, dataDir: flags.dataDir, output: flags.output, progress: flags.progress,
        requireSameCPU: flags.requireSameCPU)
      if !flags.json || !flags.quiet {
        if done { print("already finished: \(s.runDir)") }
        print(
          String(
            format: "test accuracy %.2f%%  test loss %.4f  steps %d  %.1f s  %@", s.testAccuracy * 100,
            s.testLoss, s.steps, s.seconds, s.runDir))
      }
      if flags.json { print(s.jsonLine()) }
    }
  }
}
