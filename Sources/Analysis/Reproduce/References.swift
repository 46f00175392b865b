// LotteryKit's stored numbers for each finding, from runs of `lth reproduce PAPER` on
// Fashion-MNIST (the default data set). Generated: `lth reproduce PAPER --scale quick
// --swift-references` prints this file's entries for one paper from its finished runs;
// `make reproduce` runs all five and rewrites docs/reproduce.md. Never edited by hand.

extension Papers {
  /// Key: `scale/finding id` (default data sets only).
  public static let references: [String: StoredReference] = [:]

  /// The stored number for a finding, when this run uses the default data set.
  public static func reference(_ id: String, scale: ReproductionScale, dataset: String?) -> StoredReference? {
    dataset == nil ? references["\(scale.rawValue)/\(id)"] : nil
  }
}
