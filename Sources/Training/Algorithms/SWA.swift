import Datasets
import Engine
import Foundation
import NN

/// Stochastic weight averaging (Izmailov et al. 2018; Composer `swa`): from `swa_start` to
/// `swa_end` (fractions of the run, `0.7dur`), every `update_interval` (`1ep` or `Nba`) the
/// weights join a running mean `avg = (n avg + w) / (n + 1)`; at `swa_end` the average
/// replaces the weights, batch-norm statistics are re-estimated on the training set
/// (``BatchNormStatistics``) and training goes on from there. Pruned weights stay 0 in the
/// average. The average and its count are in every checkpoint.
public final class SWA: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "swa"
  public static let summary = "average the weights from swa_start to swa_end, then train on from the average"
  public static let parameters = [
    AlgorithmParameter("swa_start", "0.7dur", "fraction of the run where averaging starts"),
    AlgorithmParameter("swa_end", "0.97dur", "fraction of the run where the average replaces the weights"),
    AlgorithmParameter("update_interval", "1ep", "between updates: 1ep (epochs) or 100ba (steps)"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    let start = try p.fraction("swa_start")
    let end = try p.fraction("swa_end")
    guard start < end else { throw EngineError("--algorithms swa: swa_start must be before swa_end") }
    let text = p.values["update_interval"] ?? ""
    let n = Int(text.dropLast(2)) ?? 0
    guard n >= 1, text.hasSuffix("ep") || text.hasSuffix("ba") else {
      throw EngineError("--algorithms swa: update_interval must be like 1ep or 100ba, got '\(text)'")
    }
    return SWA(start: start, end: end, interval: n, inEpochs: text.hasSuffix("ep"))
  }

  public let name = SWA.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .batchEnd]
  public let start: Double
  public let end: Double
  public let interval: Int
  public let inEpochs: Bool
  private var average: [(String, Tensor<Float>)] = []
  private var count = 0
  private var applied = false
  private let scratch = Tensor<Float>(zeros: [0])

  public init(start: Double, end: Double, interval: Int, inEpochs: Bool) {
    (self.start, self.end, self.interval, self.inEpochs) = (start, end, interval, inEpochs)
  }

  public func initialize(_ net: Network<Float>) throws -> Network<Float> {
    average = net.parameters.map { ($0.0, Tensor<Float>(zeros: $0.1.value.shape)) }
    return net
  }
  public var stateTensors: [(String, Tensor<Float>)] { average }
  public var stateValues: [String: String] {
    get { ["count": String(count), "applied": String(applied)] }
    set {
      count = Int(newValue["count"] ?? "0") ?? 0
      applied = newValue["applied"] == "true"
    }
  }

  /// The function form: `avg = (n avg + w) / (n + 1)`.
  public static func update(_ avg: Tensor<Float>, with w: Tensor<Float>, count n: Int) {
    let (a, x) = (avg.data, w.data)
    let (keep, add) = (Float(n) / Float(n + 1), 1 / Float(n + 1))
    for i in 0..<avg.count { a[i] = keep * a[i] + add * x[i] }
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    guard !applied else { return }
    let total = Double(state.lastStep)
    let (first, last) = (Int((start * total).rounded()), Int((end * total).rounded()))
    let every = inEpochs ? interval * state.loader.iterationsPerEpoch : interval
    let s = state.step
    let params = state.network.parameters.map(\.1)
    if s >= first && s <= last && (s - first) % every == 0 {
      for (k, p) in params.enumerated() { Self.update(average[k].1, with: p.value, count: count) }
      count += 1
    }
    if s >= last && count > 0 {
      for (k, p) in params.enumerated() { p.value.copy(from: average[k].1) }
      let data = state.loader.dataset
      try BatchNormStatistics.recompute(
        state.network, on: data, indices: Array(0..<data.count), batchSize: 500, scratch: scratch)
      applied = true
    }
  }
}
