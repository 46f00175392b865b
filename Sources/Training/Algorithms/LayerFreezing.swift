import Engine
import NN

/// Layer freezing (Composer `layer_freezing`): at the end of every epoch, with `t` the
/// fraction of the run done, the first `int(pct * (L - 1))` of the model's `L` layers are
/// frozen, `pct = 0` while `t <= freeze_start`, else
/// `freeze_level * (t - freeze_start) / (1 - freeze_start)`. Layers are the modules with
/// parameters of their own (convolution, batch norm, linear), in `state_dict` order; the
/// last is never frozen. Frozen weights keep their values (the optimizer's update is undone
/// for them) while batch-norm running statistics go on updating, as in Composer; the
/// backward pass stops before the leading top-level layers that are wholly frozen
/// (``NN/Sequential/frozenPrefix``), which is where the step gets cheaper. The schedule is a
/// function of the step, so a resumed run freezes what an uninterrupted one would.
public final class LayerFreezing: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "layer_freezing"
  public static let summary = "freezes the first layers progressively after freeze_start (at epoch ends)"
  public static let parameters = [
    AlgorithmParameter("freeze_start", "0.5", "fraction of the run after which freezing starts, in [0, 1)"),
    AlgorithmParameter("freeze_level", "1.0", "fraction of the layers frozen at the end, in [0, 1]"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    LayerFreezing(
      start: try p.double("freeze_start", "in [0, 1)") { $0 >= 0 && $0 < 1 },
      level: try p.double("freeze_level", "in [0, 1]") { $0 >= 0 && $0 <= 1 })
  }

  public let name = LayerFreezing.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .runStart, .epochEnd, .beforeOptimizerStep, .afterOptimizerStep]
  public let start: Double
  public let level: Double
  private var layers: [[Parameter<Float>]] = []
  /// Per top-level module of the body: the index of its last layer (-1: none of its own).
  private var topLevel: [Int] = []
  private var body: Sequential<Float>?
  private var frozen: [(Parameter<Float>, Tensor<Float>)] = []
  /// Per layer, a tensor per parameter for its frozen values (allocated at `initialize`, so
  /// freezing allocates nothing during training).
  private var snapshots: [[Tensor<Float>]] = []
  public private(set) var frozenLayers = 0
  public init(start: Double, level: Double) { (self.start, self.level) = (start, level) }

  /// The function form: how many of `layers` layers are frozen at fraction `t` of the run.
  public static func depth(at t: Double, layers: Int, start: Double, level: Double) -> Int {
    let pct = t <= start ? 0 : level * (t - start) / (1 - start)
    return max(0, min(layers - 1, Int(pct * Double(layers - 1))))
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    var index = 0
    layers = []
    topLevel = []
    let top = (network.body as? Sequential<Float>)?.layers ?? [("", network.body)]
    for (_, m) in top {
      for (_, leaf) in m.namedModules() where !leaf.localParameters.isEmpty {
        layers.append(leaf.localParameters.map(\.1))
        index += 1
      }
      topLevel.append(index - 1)
    }
    body = network.body as? Sequential<Float>
    snapshots = layers.map { $0.map { Tensor(zeros: $0.value.shape) } }
    guard layers.count >= 2 else {
      throw EngineError("--algorithms layer_freezing needs at least two layers; \(network.name) has \(layers.count)")
    }
    return network
  }

  private func freeze(upTo depth: Int) {
    guard depth > frozenLayers else { return }
    for l in frozenLayers..<depth {
      for (p, v) in zip(layers[l], snapshots[l]) {
        v.copy(from: p.value)
        frozen.append((p, v))
      }
    }
    frozenLayers = depth
    // Leading top-level modules whose layers are all frozen (modules without parameters
    // between them count as frozen).
    body?.frozenPrefix = topLevel.prefix { $0 < depth }.count
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    let t = { (step: Int) in Double(step) / Double(max(state.lastStep, 1)) }
    switch event {
    case .runStart:
      // What the epoch ends before this step froze (the weights have not moved since).
      let ipe = state.loader.iterationsPerEpoch
      let lastEpochEnd = state.step - state.step % ipe
      if lastEpochEnd > 0 {
        freeze(upTo: Self.depth(at: t(lastEpochEnd), layers: layers.count, start: start, level: level))
      }
    case .epochEnd:
      freeze(upTo: Self.depth(at: t(state.step), layers: layers.count, start: start, level: level))
    case .beforeOptimizerStep:
      for (p, _) in frozen { p.clearGradient() }
    case .afterOptimizerStep:
      for (p, v) in frozen { p.value.copy(from: v) }
    default: break
    }
  }
}
