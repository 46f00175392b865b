import Foundation
import Testing

/// The test tiers. `make check` runs the unit tier only (`LTH_TEST_TIER=unit`): tests of
/// kernels, layers, formulas and files that finish in seconds. End-to-end tests (they run
/// the `lth` binary, train networks for real, kill and resume processes) carry the
/// ``Testing/Trait/endToEnd`` trait and run in `make test`.
public enum TestTier {
  public static var unitOnly: Bool { ProcessInfo.processInfo.environment["LTH_TEST_TIER"] == "unit" }
  /// Long checks of a paper's claim (minutes of compute): `make verify` only
  /// (`LTH_TEST_TIER=science`).
  public static var science: Bool { ProcessInfo.processInfo.environment["LTH_TEST_TIER"] == "science" }
}

extension Tag {
  /// Runs the `lth` binary or trains real networks end to end (`make test`, not `make check`).
  @Tag public static var endToEnd: Self
}

extension Trait where Self == ConditionTrait {
  /// Skipped under `make check` (see ``TestTier``); pair it with `.tags(.endToEnd)`.
  public static var endToEnd: Self {
    .enabled(if: !TestTier.unitOnly, "end-to-end: make check runs the unit tier only")
  }
}
