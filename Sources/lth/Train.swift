import ArgumentParser
import Engine
import Experiments
import Families
import Foundation
import NN
import Training

/// Flags shared by every command that trains (`train`, `lottery`, `branch`). Each flag's
/// name, help and default come from its hyperparameter's declaration
/// (``Experiments/TrainingHParams/CodingKeys``, ``Experiments/RunSettingKey``); unset flags
/// take the model family's recipe (see `Recipe` and docs/REFERENCE.md).
struct TrainingFlags: ParsableArguments {
  typealias K = TrainingHParams.CodingKeys
  typealias S = RunSettingKey
  @Option(name: .key(K.model), help: .key(K.model)) var model: String
  @Option(name: .key(S.widthFactor), help: .key(S.widthFactor)) var widthFactor = 1.0
  @Option(name: .key(K.dataset), help: .key(K.dataset)) var dataset: String?
  @Option(name: .key(S.dataDir), help: .key(S.dataDir)) var dataDir: String?
  @Option(name: .key(K.trainingSteps), help: .key(K.trainingSteps)) var trainingSteps: String?
  @Option(name: .key(K.batchSize), help: .key(K.batchSize)) var batchSize: Int?
  @Option(name: .key(K.optimizer), help: .key(K.optimizer)) var optimizer: Recipe.OptimizerKind?
  @Option(name: .key(K.lr), help: .key(K.lr)) var lr: Double?
  @Option(name: .key(K.momentum), help: .key(K.momentum)) var momentum: Double?
  @Flag(name: .key(K.nesterov), help: .key(K.nesterov)) var nesterov = false
  @Option(name: .key(K.weightDecay), help: .key(K.weightDecay)) var weightDecay: Double?
  @Option(name: .key(K.warmupSteps), help: .key(K.warmupSteps)) var warmupSteps = "0it"
  @Option(name: .key(K.milestones), help: .key(K.milestones)) var milestones: String?
  @Option(name: .key(K.gamma), help: .key(K.gamma)) var gamma: Double?
  @Option(name: .key(K.schedule), help: .key(K.schedule)) var schedule: LearningRateSchedule.Kind?
  @Option(name: .key(K.initializer), help: .key(K.initializer)) var initializer: Initializer?
  @Option(name: .key(K.batchNormInit), help: .key(K.batchNormInit)) var batchNormInit: BatchNormInit?
  @Option(name: .key(K.seed), help: .key(K.seed)) var seed: UInt64 = 0
  @Option(name: .key(K.dataOrderSeed), help: .key(K.dataOrderSeed)) var dataOrderSeed: UInt64?
  @Option(name: .key(K.validationSize), help: .key(K.validationSize)) var validationSize = 0
  @Option(name: .key(K.subsampleFraction), help: .key(K.subsampleFraction)) var subsampleFraction = 1.0
  @Option(name: .key(K.randomLabelsFraction), help: .key(K.randomLabelsFraction)) var randomLabelsFraction = 0.0
  @Option(name: .key(K.evalEvery), help: .key(K.evalEvery)) var evalEvery = "1ep"
  @Option(name: .key(K.testEvalEvery), help: .key(K.testEvalEvery)) var testEvalEvery: String?
  @Flag(name: .key(K.evalTrain), help: .key(K.evalTrain)) var evalTrain = false
  @Option(name: .key(K.augment), help: .key(K.augment)) var augment: Bool?
  @Option(name: .key(S.threads), help: .key(S.threads)) var threads = MachineInfo.defaultThreads
  @Option(name: .key(K.convBackend), help: .key(K.convBackend)) var convBackend = ConvBackendPolicy.auto
  @Option(name: .key(K.sparseKernels), help: .key(K.sparseKernels)) var sparseKernels = SparseKernelPolicy.auto
  @Option(name: .key(K.algorithms), help: .key(K.algorithms)) var algorithms: String?
  @Option(name: .key(S.recipe), help: .key(S.recipe)) var recipe: String?
  @Option(name: .key(S.output), help: .key(S.output)) var output = "./lth_runs"
  @Flag(name: .key(S.requireSameCPU), help: .key(S.requireSameCPU)) var requireSameCPU = false
  @Flag(name: .key(S.quiet), help: .key(S.quiet)) var quiet = false
  @Flag(name: .key(S.json), help: .key(S.json)) var json = false

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
    o.algorithms = algorithms
    o.recipe = recipe
    o.testEvalEvery = testEvalEvery
    o.initializer = initializer
    o.batchNormInit = batchNormInit
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
