// The JSON files of a run folder: `summary.json` (`TrainSummary.decode`), `metrics.jsonl`
// (`MetricsLog.parse`), `hparams.json` (`RunStore.storedHParams`) and `sparsity.json`
// (`Results.sparsityDensity`). Every input goes to all four.
import Experiments
import FuzzSupport
import Training

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = fuzzBytes(data, size)
  oneLineErrors { _ = try TrainSummary.decode(input, path: "summary.json") }
  oneLineErrors { _ = try MetricsLog.parse(input, path: "metrics.jsonl") }
  oneLineErrors { _ = try RunStore.storedHParams(input, path: "hparams.json") }
  if let d = Results.sparsityDensity(input) { require(d >= 0 && d <= 1, "density \(d)") }
  return 0
}

runFuzzer { fuzz($0, $1) }
