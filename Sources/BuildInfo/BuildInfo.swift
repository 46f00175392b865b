/// What the build recorded about its source: the git commit of the checkout it was built
/// from (embedded by the GitCommit build-tool plugin when the binary was compiled, not read
/// from the source tree at run time) and whether tracked files had uncommitted changes.
public enum BuildInfo {
  /// 40 hex digits, or "unknown" when built outside a git checkout.
  public static let gitCommit: String = buildGitCommit
  /// Uncommitted changes to tracked files at build time; nil when the commit is unknown.
  public static let gitDirty: Bool? = buildGitDirty
}
