import Engine

/// SNIP (Lee, Ajanthan & Torr 2019): `s = |w * dL/dw|`, with `L` the mean cross-entropy of
/// the score batch (`--score-batch` examples per class), batch norm in training mode.
public struct SNIPScore: ScoreMethod {
  public init() {}
  public var name: String { "snip" }
  public var formula: String { "s = |w * dL/dw| on a batch of training data" }
  public var needsData: Bool { true }
  public var defaultRounds: Int { 1 }
  public func scores(_ c: ScoringContext) throws -> Scores {
    let b = try c.requireBatch(name)
    c.network.setTraining(true)
    try c.network.lossAndGradients(input: b.x, labels: b.labels)
    return c.perWeight { w, g in abs(w * g) }
  }
}
