import ArgumentParser
import Datasets
import Engine
import Experiments
import Families
import Foundation
import NN
import Pruning
import Training

/// `lth logits`: evaluation-mode logits of a saved model (or a sparse export) on synthetic
/// inputs, written as safetensors (`inputs`, `logits`); `make verify` compares them with
/// PyTorch's.
struct Logits: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Write a saved model's logits on deterministic synthetic inputs (for cross-checks with PyTorch).")
  @Argument(help: "A model file (\(RunFile.modelFinal.rawValue), ...) or a sparse export (`lth export`).")
  var modelFile: String
  @Option(help: "Model name the file belongs to (not needed for a sparse export).") var model: String?
  @Option(help: "Mask file (\(RunFile.mask.rawValue)) to apply: pruned layers then run on sparse kernels.")
  var mask: String?
  @Option(help: "Number of inputs.") var count = 16
  @Option(help: "Output safetensors file with tensors `inputs` and `logits`.") var output: String

  func run() throws {
    runOrFail {
      guard count >= 1 else { throw EngineError("--count must be at least 1") }
      let (_, meta) = try Safetensors.read(modelFile)
      let net: Network<Float>
      if meta["format"] == SparseExport.format {
        net = try SparseExport.load(modelFile)
      } else {
        guard let model else {
          throw EngineError("--model is required for a model file that is not a sparse export")
        }
        net = try ModelZoo.make(model)
        try ModelState.load(net, from: modelFile)
        if let mask { try Mask.load(mask, for: net).apply(to: net) }
      }
      net.setTraining(false)
      let data = Synthetic.make(count: count, shape: net.inputShape, classes: net.classes, seed: 123)
      let x = Tensor<Float>(zeros: [0])
      _ = data.gather(0..<count, into: x)
      let logits = try net.forward(x)
      try Safetensors.write(
        [("inputs", Safetensors.Entry(x)), ("logits", Safetensors.Entry(logits))], to: output)
    }
  }
}
