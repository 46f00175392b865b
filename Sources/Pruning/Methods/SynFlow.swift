import Engine

/// SynFlow (Tanaka, Kunin, Yamins & Ganguli 2020), data-free: every parameter replaced by
/// `|w|`, batch norm in evaluation mode, an all-ones input, `R = sum of the outputs`;
/// `s = |w * dR/dw|`, in Float64 so deep networks do not overflow. Its default is 100
/// rounds, round `r` pruning to density `d^(r/100)` (see ``PaIPruner``).
public struct SynFlowScore: ScoreMethod {
  public init() {}
  public var name: String { "synflow" }
  public var formula: String {
    "s = |w * dR/dw|, R = sum of outputs for input 1 with |w|, eval mode, float64"
  }
  public var needsData: Bool { false }
  public var defaultRounds: Int { 100 }
  public func scores(_ c: ScoringContext) throws -> Scores {
    let r = try c.network.synflowGradients()
    guard r.isFinite else { throw PruningError("synflow: R = sum of outputs is \(r) (overflow)") }
    return c.perWeight { w, g in abs(w * g) }
  }
}
