import ArgumentParser
import Engine
import Experiments
import Foundation
import NN
import Pruning

/// Flags of a pruning-at-initialisation experiment besides training and replicates.
struct PaIFlags: ParsableArguments {
  typealias K = PaIHParams.CodingKeys
  @Option(
    name: .key(K.method),
    help: ArgumentHelp(
      K.method.fullHelp, discussion: ScoreMethods.all.map { "\($0.name): \($0.formula)" }.joined(separator: "; ")))
  var method: String?
  @Option(help: "Target densities of the pruned tensors, e.g. 0.1,0.032,0.01 (required).") var densities: String?
  @Option(name: .key(K.allocation), help: .key(K.allocation)) var allocation = Allocation.global
  @Option(name: .key(K.rounds), help: .key(K.rounds)) var rounds: Int?
  @Option(name: .key(K.scoreBatch), help: .key(K.scoreBatch)) var scoreBatch: Int?
  @Option(name: .key(K.atStep), help: .key(K.atStep)) var atStep: String?
  @Option(name: .key(K.minDensity), help: .key(K.minDensity)) var minDensity: Double?
  @Flag(help: "Train even when no path from the input to the output is left.") var allowCollapse = false

  func resolve(_ training: TrainingHParams, _ lottery: LotteryFlags) throws -> PaIHParams {
    guard let method else { throw K.method.invalid("is required") }
    let after = method == PaIHParams.afterTraining
    return try PaIHParams(
      training: training, method: method, allocation: allocation, rounds: rounds, scoreBatch: scoreBatch,
      atStep: atStep,
      ignore: lottery.pruneIgnore.map { $0.split(separator: ",").map(String.init) } ?? [],
      minDensity: minDensity,
      retrain: after ? lottery.retrain : nil, rewindStep: after ? lottery.rewindStep : nil,
      finetuneSteps: after ? lottery.finetuneSteps : nil)
  }

  func densityList() throws -> [Double] {
    guard let densities else { throw EngineError("--densities is required, e.g. 0.1,0.032,0.01") }
    return try parseDensities(densities)
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
