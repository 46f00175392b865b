import Foundation
import PackagePlugin

/// Embeds the git commit of the package checkout at build time: a prebuild command (run
/// before every build, so a new commit is always picked up) writes `GitCommit.swift` with
/// `buildGitCommit` and `buildGitDirty`. It rewrites the file only when its text changes,
/// so an unchanged checkout recompiles nothing. Outside a git checkout (a source tarball, no
/// git installed) the commit is "unknown" and the dirty flag nil.
@main
struct GitCommit: BuildToolPlugin {
  func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
    let out = context.pluginWorkDirectoryURL.appendingPathComponent("generated")
    let script = #"""
      PATH="/usr/bin:/bin:/usr/local/bin:/opt/homebrew/bin:$PATH"
      dir="$1"; out="$2"; mkdir -p "$out"
      commit=$(git -C "$dir" rev-parse HEAD 2>/dev/null) || commit=""
      case "$commit" in
        *[!0-9a-f]*|"") commit=unknown; dirty=nil ;;
        *) if [ -n "$(git --no-optional-locks -C "$dir" status --porcelain --untracked-files=no 2>/dev/null)" ]
           then dirty=true; else dirty=false; fi ;;
      esac
      tmp="$out/../GitCommit.swift.tmp.$$"
      printf '// Generated at build time by the GitCommit plugin; do not edit.\nlet buildGitCommit = "%s"\nlet buildGitDirty: Bool? = %s\n' "$commit" "$dirty" > "$tmp"
      if cmp -s "$tmp" "$out/GitCommit.swift"; then rm -f "$tmp"; else mv -f "$tmp" "$out/GitCommit.swift"; fi
      """#
    return [
      .prebuildCommand(
        displayName: "Embedding the git commit of \(context.package.displayName)",
        executable: URL(fileURLWithPath: "/bin/sh"),
        arguments: ["-c", script, "sh", context.package.directoryURL.path, out.path],
        outputFilesDirectory: out)
    ]
  }
}
