import Foundation

/// Runs a graph's unfinished phases on this machine as `lth` child processes, `jobs` at a
/// time, each as soon as its dependencies have finished, with `threads` worker threads
/// each. Children die with this process (`setpriv --pdeathsig KILL`, util-linux, where
/// present), so a killed run leaves no orphan holding a phase's lock. A failed phase
/// stops its dependants; the others go on. Returns one line per failed phase.
public enum LocalExecutor {
  public struct Options: Sendable {
    public var jobs: Int
    public var threads: Int
    /// Pass a single job's output through (false: children run `--quiet`, one line per phase).
    public var passThrough: Bool
    public var quiet: Bool
    public init(jobs: Int, threads: Int, passThrough: Bool, quiet: Bool) {
      (self.jobs, self.threads, self.passThrough, self.quiet) = (jobs, threads, passThrough, quiet)
    }
  }

  /// The `lth` binary of this process.
  public static var lth: String { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path }

  public static func run(_ graph: JobGraph, _ o: Options, say: (String) -> Void) throws -> [String] {
    let setpriv = "/usr/bin/setpriv"
    let useSetpriv = FileManager.default.isExecutableFile(atPath: setpriv)
    var finished = Set(graph.phases.filter(\.done).map(\.id))
    var failed = Set<String>()
    var waiting = graph.pending
    var running: [(Phase, Process, Pipe?, Date)] = []
    var failures: [String] = []
    let total = waiting.count
    var count = 0
    // Longest chain first: among the runnable phases, the one with the most phases waiting
    // on it in sequence (a lottery replicate's later levels), so that no chain is left to run
    // alone at the end while other cores idle. Ties keep the graph's order.
    var chain: [String: Int] = [:]
    for p in graph.phases.reversed() { chain[p.id] = 1 }
    var dependents: [String: [String]] = [:]
    for p in graph.phases { for d in p.dependencies { dependents[d, default: []].append(p.id) } }
    func length(_ id: String) -> Int {
      if let known = chain[id], known > 1 || dependents[id] == nil { return known }
      let l = 1 + (dependents[id] ?? []).map(length).max()!
      chain[id] = l
      return l
    }
    for p in graph.phases { _ = length(p.id) }
    while !waiting.isEmpty || !running.isEmpty {
      // Phases whose dependency failed can never run.
      for p in waiting where p.dependencies.contains(where: failed.contains) {
        failed.insert(p.id)
        failures.append("\(p.id): not run, a phase it needs failed")
      }
      waiting.removeAll { failed.contains($0.id) }
      while running.count < o.jobs,
        let i = waiting.indices.filter({ waiting[$0].dependencies.allSatisfy(finished.contains) })
          .max(by: {
            chain[waiting[$0].id]! < chain[waiting[$1].id]!
              || (chain[waiting[$0].id]! == chain[waiting[$1].id]! && $0 > $1)
          })
      {
        let phase = waiting.remove(at: i)
        let argv =
          phase.arguments + ["--threads", "\(o.threads)"] + (o.passThrough && !o.quiet ? [] : ["--quiet"])
        let p = Process()
        if useSetpriv {
          p.executableURL = URL(fileURLWithPath: setpriv)
          p.arguments = ["--pdeathsig", "KILL", "--", lth] + argv
        } else {
          p.executableURL = URL(fileURLWithPath: lth)
          p.arguments = argv
        }
        var pipe: Pipe?
        if !o.passThrough || o.quiet { p.standardOutput = FileHandle.nullDevice }
        if !o.passThrough {
          pipe = Pipe()
          p.standardError = pipe
        }
        try p.run()
        running.append((phase, p, pipe, Date()))
      }
      if running.isEmpty && !waiting.isEmpty {
        // Nothing runnable and nothing running: the rest waits on failed phases (handled
        // above) or on each other (JobGraph refuses cycles).
        break
      }
      usleep(20_000)
      var still: [(Phase, Process, Pipe?, Date)] = []
      for (phase, p, pipe, t) in running {
        if p.isRunning {
          still.append((phase, p, pipe, t))
          continue
        }
        count += 1
        let err =
          pipe.map { String(decoding: $0.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) } ?? ""
        if p.terminationStatus == 0 {
          finished.insert(phase.id)
        } else {
          failed.insert(phase.id)
          let last = err.split(separator: "\n").last.map(String.init) ?? "exit status \(p.terminationStatus)"
          failures.append("\(phase.id): \(last)")
        }
        if !o.quiet && !o.passThrough {
          say(
            String(
              format: "phase %d/%d %@: %@ (%.0f s)", count, total, phase.id,
              p.terminationStatus == 0 ? "done" : "FAILED", Date().timeIntervalSince(t)))
        }
      }
      running = still
    }
    return failures
  }
}
