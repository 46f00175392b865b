import Engine

/// How a family is pruned per IMP level (read by the pruning code).
public struct PruningPolicy: Equatable, Sendable, Codable {
  public enum Strategy: String, Sendable, Codable, CaseIterable { case global, layerwise }
  public var strategy: Strategy
  /// Fraction of the remaining weights pruned per level (default for every tensor).
  public var fraction: Double
  /// Fraction for convolution weights (nil: `fraction`).
  public var convFraction: Double?
  /// Fraction for the output layer (nil: `fraction`; 0 never prunes it).
  public var outputFraction: Double?
  /// Tensor names (simple `*` wildcards) never pruned.
  public var ignore: [String]

  public init(
    strategy: Strategy, fraction: Double, convFraction: Double? = nil, outputFraction: Double? = nil,
    ignore: [String] = []
  ) {
    self.strategy = strategy
    self.fraction = fraction
    self.convFraction = convFraction
    self.outputFraction = outputFraction
    self.ignore = ignore
  }
}

