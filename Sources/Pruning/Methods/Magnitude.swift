import Engine

/// Magnitude: `s = |w|`. At initialisation this is "magnitude at init"; on trained weights
/// it is the score of iterative magnitude pruning and of magnitude pruning after training.
public struct MagnitudeScore: ScoreMethod {
  public init() {}
  public var name: String { "magnitude" }
  public var formula: String { "s = |w|" }
  public var needsData: Bool { false }
  public var defaultRounds: Int { 1 }
  public func scores(_ c: ScoringContext) throws -> Scores { c.perWeight { w, _ in abs(w) } }
}
