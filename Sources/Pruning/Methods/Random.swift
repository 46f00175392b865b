import Engine

/// Random pruning: `s ~ U(0, 1)` per weight, from `(seed, "score-random/round=r", tensor)`.
public struct RandomScore: ScoreMethod {
  public init() {}
  public var name: String { "random" }
  public var formula: String { "s = u, u ~ U(0,1) (seeded)" }
  public var needsData: Bool { false }
  public var defaultRounds: Int { 1 }
  public func scores(_ c: ScoringContext) throws -> Scores {
    var out: Scores = [:]
    for (t, (n, p)) in c.network.prunableParameters.enumerated() {
      var r = RandomStream(seed: c.seed, purpose: "score-random/round=\(c.round)", index: UInt64(t))
      out[n] = (0..<p.value.count).map { _ in r.uniform() }
    }
    return out
  }
}
