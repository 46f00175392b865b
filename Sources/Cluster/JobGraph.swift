/// Cluster: experiments as graphs of phases, and the executors that run them.
///
/// Owns ``Phase`` and ``JobGraph`` (every experiment command planned as phases with
/// dependencies: a lottery level after the level before it, a branch after its level, one
/// phase per prune-init (replicate, density), per lmc (replicate, spawn step), per scaling
/// point and level) and ``LocalExecutor`` (`lth run --jobs N`: N phases at a time as child
/// processes, each the same `lth` command restricted to its phase). Phases rely on the run
/// store's per-phase locks and skip-if-done, so running one twice is harmless.
import Foundation

/// One phase: an `lth` command line restricted to it, the phases it needs first, and
/// whether its result already exists.
public struct Phase: Sendable, Equatable, Codable {
  /// Unique in its graph, e.g. `r2.L3`, `r1.L2.random-reinit`, `r1.d0.05`, `r1.k100`.
  public var id: String
  /// `level`, `branch`, `density`, `spawn`.
  public var kind: String
  /// The `lth` arguments (without the program, `--threads` and `--quiet`).
  public var arguments: [String]
  public var dependencies: [String]
  public var done: Bool
  /// The file whose existence marks the phase finished.
  public var marker: String

  public init(id: String, kind: String, arguments: [String], dependencies: [String], marker: String) {
    (self.id, self.kind, self.arguments, self.dependencies, self.marker) = (
      id, kind, arguments, dependencies, marker
    )
    done = FileManager.default.fileExists(atPath: marker)
  }
}

/// Phases with dependencies, in a valid order.
public struct JobGraph: Sendable, Codable {
  public var command: [String]
  /// The experiment folder the phases write into.
  public var root: String
  public var phases: [Phase]

  /// Checks ids are unique and every dependency names a phase of the graph.
  public init(command: [String], root: String = "", phases: [Phase]) throws {
    self.command = command
    self.root = root
    self.phases = phases
    var seen = Set<String>()
    for p in phases {
      guard seen.insert(p.id).inserted else { throw GraphError("phase \(p.id) is planned twice") }
    }
    for p in phases {
      for d in p.dependencies where !seen.contains(d) {
        throw GraphError("phase \(p.id) depends on \(d), which is not in the graph")
      }
    }
    _ = try waves()
  }

  /// The phases still to run.
  public var pending: [Phase] { phases.filter { !$0.done } }

  /// Unfinished phases in waves: each wave depends only on earlier waves or finished
  /// phases (the independent phases of a wave are what a Slurm job array holds).
  public func waves() throws -> [[Phase]] {
    var done = Set(phases.filter(\.done).map(\.id))
    var left = pending
    var out: [[Phase]] = []
    while !left.isEmpty {
      let wave = left.filter { $0.dependencies.allSatisfy { done.contains($0) } }
      guard !wave.isEmpty else {
        throw GraphError(
          "the phases \(left.map(\.id).joined(separator: ", ")) depend on each other in a cycle")
      }
      out.append(wave)
      for p in wave { done.insert(p.id) }
      left.removeAll { p in wave.contains { $0.id == p.id } }
    }
    return out
  }

  /// A text listing: one line per phase with its state and dependencies.
  public func text() -> String {
    var lines: [String] = []
    let pendingCount = pending.count
    lines.append("\(phases.count) phases, \(phases.count - pendingCount) done, \(pendingCount) to run")
    let waves = (try? self.waves()) ?? []
    for (i, w) in waves.enumerated() {
      lines.append("wave \(i + 1): \(w.map(\.id).joined(separator: " "))")
    }
    for p in phases {
      let deps = p.dependencies.isEmpty ? "" : " after " + p.dependencies.joined(separator: ",")
      lines.append(
        "\(p.done ? "done   " : "pending") \(p.id)\(deps): lth \(p.arguments.joined(separator: " "))")
    }
    return lines.joined(separator: "\n")
  }

  /// `lth plan --json`: the phases and the waves of the unfinished ones.
  public struct Listing: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
      public var id: String
      public var kind: String
      public var arguments: [String]
      public var dependencies: [String]
      public var done: Bool
      public var marker: String
    }
    public var command: [String]
    public var root: String
    public var phases: [Entry]
    public var waves: [[String]]
  }

  public var listing: Listing {
    Listing(
      command: command, root: root,
      phases: phases.map {
        .init(
          id: $0.id, kind: $0.kind, arguments: $0.arguments, dependencies: $0.dependencies, done: $0.done,
          marker: $0.marker)
      }, waves: ((try? waves()) ?? []).map { $0.map(\.id) })
  }
}

public struct GraphError: Error, CustomStringConvertible {
  public var description: String
  public init(_ d: String) { description = d }
}

/// Command-line surgery for restricting an experiment command to one phase.
public enum Arguments {
  /// `arguments` without the options in `names` (both `--name value` and `--name=value`)
  /// and without the flags in `flags`.
  public static func removing(_ names: [String], flags: [String] = [], from arguments: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < arguments.count {
      let a = arguments[i]
      if names.contains(a) {
        i += 2
        continue
      }
      if names.contains(where: { a.hasPrefix($0 + "=") }) || flags.contains(a) {
        i += 1
        continue
      }
      out.append(a)
      i += 1
    }
    return out
  }
}
