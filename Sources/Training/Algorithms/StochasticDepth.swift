import Engine
import Foundation
import NN

/// Stochastic depth (Huang et al. 2016; Composer `stochastic_depth`) on the zoo's residual
/// blocks (``NN/BasicBlock``; Composer's own targets torchvision's bottleneck only). Block
/// `i` of `L` drops its main path with probability `p_i = (i + 1) / L * drop_rate`
/// (`linear`) or `p_i = drop_rate` (`uniform`):
///
/// - `block`: one draw per block per batch; a dropped block computes `relu(shortcut(x))`
///   only, so the step is cheaper.
/// - `sample`: one draw per example; its main path is multiplied by 0 or 1.
///
/// In evaluation the main path is multiplied by `1 - p_i` (the paper's and Composer's
/// convention; training is not rescaled). `drop_warmup` (block mode only, as Composer) ramps
/// the rate linearly from 0 over that fraction of the run.
public final class StochasticDepth: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "stochastic_depth"
  public static let summary = "residual blocks drop their main path with probability p_i (block or per sample)"
  public static let parameters = [
    AlgorithmParameter("target_layer_name", "BasicBlock", "the residual block to act on (the zoo's only one)"),
    AlgorithmParameter("stochastic_method", "block", "block (one draw per block and batch) or sample (per example)"),
    AlgorithmParameter("drop_rate", "0.2", "drop probability of the last block, in [0, 1)"),
    AlgorithmParameter("drop_distribution", "linear", "linear ((i+1)/L * drop_rate) or uniform"),
    AlgorithmParameter("drop_warmup", "0.0dur", "fraction of the run over which the rate ramps up (block only)"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    _ = try p.choice("target_layer_name", ["BasicBlock"])
    let method = try p.choice("stochastic_method", ["block", "sample"])
    let warmup = try p.fraction("drop_warmup")
    if method == "sample" && warmup > 0 {
      throw EngineError("--algorithms stochastic_depth: drop_warmup needs stochastic_method=block (as Composer)")
    }
    return StochasticDepth(
      perSample: method == "sample", dropRate: try p.double("drop_rate", "in [0, 1)") { $0 >= 0 && $0 < 1 },
      linear: try p.choice("drop_distribution", ["linear", "uniform"]) == "linear", warmup: warmup)
  }

  public let name = StochasticDepth.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .runStart, .batchLoaded]
  public let perSample: Bool
  public let dropRate: Double
  public let linear: Bool
  public let warmup: Double
  private var blocks: [BasicBlock<Float>] = []
  public init(perSample: Bool, dropRate: Double, linear: Bool, warmup: Double) {
    (self.perSample, self.dropRate, self.linear, self.warmup) = (perSample, dropRate, linear, warmup)
  }

  /// The function form: block `i`'s (0-based, of `count`) drop probability when the run's
  /// rate is `rate`.
  public static func probability(block i: Int, of count: Int, rate: Double, linear: Bool) -> Double {
    linear ? Double(i + 1) / Double(count) * rate : rate
  }

  /// The rate at `fraction` of the run: ramped linearly over `warmup`, then `dropRate`.
  public func rate(at fraction: Double) -> Double {
    warmup > 0 && fraction < warmup ? fraction / warmup * dropRate : dropRate
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    blocks = network.body.namedModules().compactMap { $0.1 as? BasicBlock<Float> }
    guard !blocks.isEmpty else {
      throw EngineError("--algorithms stochastic_depth needs residual blocks; \(network.name) has none")
    }
    setEvaluationScales(rate: rate(at: 0))
    return network
  }

  private func setEvaluationScales(rate: Double) {
    for (i, b) in blocks.enumerated() {
      b.evaluationScale = Float(1 - Self.probability(block: i, of: blocks.count, rate: rate, linear: linear))
    }
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    let r = rate(at: Double(state.step) / Double(max(state.lastStep, 1)))
    setEvaluationScales(rate: r)
    guard event == .batchLoaded else { return }
    var random = state.random(for: self)
    let n = state.labels.count
    for (i, b) in blocks.enumerated() {
      let p = Self.probability(block: i, of: blocks.count, rate: r, linear: linear)
      if perSample {
        b.residualDrop = .scale((0..<n).map { _ in random.uniform() < p ? 0 : 1 })
      } else {
        b.residualDrop = random.uniform() < p ? .skip : .keep
      }
    }
  }
}
