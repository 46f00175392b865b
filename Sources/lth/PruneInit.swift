import ArgumentParser
import Engine
import Experiments
import Foundation
import NN
import Pruning

/// Flags of a pruning-at-initialisation experiment besides training and replicates.
struct PaIFlags: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "random, magnitude, snip, grasp, synflow or magnitude-after-training.",
      discussion: ScoreMethods.all.map { "\($0.name): \($0.formula)" }.joined(separator: "; ")))
  var method: String?
  @Option(help: "Target densities of the pruned tensors, e.g. 0.1,0.032,0.01.") var densities: String?
  @Option(help: "global (one threshold, default), layerwise or erk.") var allocation = "global"
  @Option(help: "Score-and-prune rounds; round r prunes to d^(r/rounds) (default: 100 for synflow, else 1).")
  var rounds: Int?
  @Option(help: "Examples per class in the score batch of snip and grasp (default 10).") var scoreBatch: Int?
  @Option(help: "Score the dense run's weights at this step (e.g. 500it) and train on from there.")
  var atStep: String?
  @Option(help: "Minimum density of every pruned tensor.") var minDensity: Double?
  @Flag(help: "Train even when no path from the input to the output is left.") var allowCollapse = false

  func resolve(_ training: TrainingHParams, _ lottery: LotteryFlags) throws -> PaIHParams {
    guard let method else { throw EngineError("--method is required") }
    guard let a = Allocation(rawValue: allocation) else {
      throw EngineError("--allocation must be global, layerwise or erk, got \(allocation)")
    }
    let after = method == PaIHParams.afterTraining
    let mode =
      try after
      ? RetrainMode(rawValue: lottery.retrain).orThrow(
        EngineError("--retrain must be weight-rewind, lr-rewind or finetune, got \(lottery.retrain)")) : nil
    return try PaIHParams(
      training: training, method: method, allocation: a, rounds: rounds, scoreBatch: scoreBatch,
      atStep: atStep,
      ignore: lottery.pruneIgnore.map { $0.split(separator: ",").map(String.init) } ?? [],
      minDensity: minDensity,
      retrain: mode, rewindStep: after ? lottery.rewindStep : nil,
      finetuneSteps: after ? lottery.finetuneSteps : nil)
  }

  func densityList() throws -> [Double] {
    guard let densities else { throw EngineError("--densities is required, e.g. 0.1,0.032,0.01") }
    return try parseDensities(densities)
  }
}

extension Optional {
  func orThrow(_ e: Error) throws -> Wrapped {
    guard let v = self else { throw e }
    return v
  }
}

struct PruneInit: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "prune-init",
    abstract: "Prune at initialisation (random, magnitude, SNIP, GraSP, SynFlow) and train, per density.",
    discussion: """
      Scores the initial weights the training then starts from (or the dense run's weights at \
      --at-step), prunes to each density (--allocation, --rounds) and trains with the model's \
      recipe. --method magnitude-after-training prunes the trained dense network one-shot and \
      retrains it (--retrain, --rewind-step). Results go to \
      <output>/pai_<hash>/replicate_R/density_D/main/; re-running the same command skips \
      every finished phase. Ablations: `lth branch shuffle|reinit|invert` with the same flags.
      """)
  @OptionGroup var training: TrainingFlags
  @OptionGroup var lottery: LotteryFlags
  @OptionGroup var pai: PaIFlags

  func run() throws {
    runOrFail {
      try training.applyThreads()
      let densities = try pai.densityList()
      let h = try pai.resolve(try training.resolve(), lottery)
      let replicates = try lottery.replicateList()
      let runner = try PaIRunner(
        h, dataDir: training.dataDir, output: training.output, progress: training.progress,
        allowCollapse: pai.allowCollapse)
      let record = try RunStore.begin(runner, command: "prune-init", requireSameCPU: training.requireSameCPU) {
        runner.hasUnfinished(replicates: replicates, densities: densities)
      }
      try CommandRecord.perform(record) {
        for r in replicates { try runner.runReplicate(r, densities: densities) }
      }
      try printResults(runner.root, json: training.json)
    }
  }
}
