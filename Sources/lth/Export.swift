import ArgumentParser
import Engine
import Experiments
import Foundation
import Training

/// `lth export LEVEL --format sparse`: a pruned level as a compressed ticket (see
/// ``Experiments/SparseExport``).
struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Write a pruned level as one safetensors file: CSR per pruned layer, masks, initial and rewind-step weights.",
    discussion: """
      LEVEL is a finished level folder of a lottery or prune-init run, e.g. \
      lth_runs/lottery_<hash>/replicate_1/level_15. Every pruned weight W is stored as \
      W.crow_indices, W.col_indices (int64) and W.values (float32), as \
      torch.sparse_csr_tensor takes them, with W.mask beside it; other tensors keep their \
      PyTorch names; init.* and rewind.* hold the whole network at step 0 and at the rewind \
      step. `lth logits EXPORT` runs it on LotteryKit's sparse kernels; docs/sparse-kernels.md shows \
      how to load it in PyTorch.
      """)
  @Argument(help: "A finished level folder.") var level: String
  @Option(help: "Export format (sparse).") var format = "sparse"
  @Option(help: "Output file (default: LEVEL/\(RunFile.ticket.rawValue)).") var output: String?

  func run() throws {
    runOrFail {
      guard format == "sparse" else { throw EngineError("--format must be sparse, got \(format)") }
      let l = try SparseExport.locate(level)
      let out = output ?? RunFile.ticket.path(in: l.directory)
      let density = try SparseExport.write(l, to: out)
      let size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
      print(String(format: "%@: %@ at density %.4f, %.1f KiB", out, l.model, density, Double(size) / 1024))
    }
  }
}
