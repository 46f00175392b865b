import Analysis
import ArgumentParser
import Cluster
import Engine
import Experiments
import Foundation
import NN
import Training

struct Scaling: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Scaling laws of pruned networks: sweep depth, width, data and density; fit; predict.",
    discussion: """
      The law of Rosenfeld et al. (ICML 2021): err = e_np |(m - j p (e_up/e_np)^(1/g)) / (m - j p)|^g \
      with m = l^phi w^psi d. See docs/guide-scaling.md.
      """,
    subcommands: [ScalingSweepCommand.self, ScalingFitCommand.self, ScalingPredictCommand.self])
}

struct ScalingSweepCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sweep",
    abstract: "A grid of IMP experiments, one lottery run per (depth, width factor, data fraction).",
    discussion: """
      Every other flag is a lottery flag (--training-steps, --pruning-strategy, --rewind-step, \
      ...) and applies to every point. Results: <output>/scaling_<hash>/ with \(RunFile.manifest.rawValue) \
      and one lottery_<hash>/ per point; re-running the same command resumes point by point. \
      --jobs N runs N points at a time in separate processes, with --threads split between \
      them.
      """)
  @Option(help: "mnist_lenet (or mnist_lenet_N1_N2...), cifar_conv, cifar_resnet or cifar_vgg.") var family:
    String
  @Option(help: "Depths, comma separated (cifar_resnet: 8,14,20; not for mnist_lenet).") var depths: String?
  @Option(help: "Width factors, comma separated (every hidden width is scaled).") var widthFactors = "1"
  @Option(help: "Fractions of the training set, comma separated, in (0, 1].") var dataFractions = "1"
  @Option(help: "Pruning levels after the dense level 0.") var levels: Int
  @Option(help: "Replicates per point.") var replicates = 1
  @Option(help: "Points run at the same time, in separate processes.") var jobs = 1
  @Option(help: "Worker threads in all (each of the --jobs processes gets threads/jobs, at least 1).")
  var threads = MachineInfo.defaultThreads
  @Option(help: "Output root.") var output = "./lth_runs"
  @Flag(help: "No progress output.") var quiet = false
  @Argument(parsing: .allUnrecognized, help: "Lottery and training flags for every point.") var lotteryFlags:
    [String] = []

  static let reserved = [
    "--model", "--width-factor", "--subsample-fraction", "--levels", "--replicates", "--replicate",
    "--output",
    "--threads", "--json", "--quiet",
  ]

  /// Every point of the grid (flags, model and lottery hash checked before any training),
  /// the sweep's identity and its folder.
  func plan() throws -> (
    root: String, sweep: ScalingSweepHParams, points: [ScalingManifest.Point], lotteries: [LotteryHParams]
  ) {
    let fam = try ScalingFamily(family)
    guard levels >= 0 else { throw EngineError("--levels must be non-negative, got \(levels)") }
    guard replicates >= 1 else { throw EngineError("--replicates must be at least 1, got \(replicates)") }
    guard jobs >= 1 else { throw EngineError("--jobs must be at least 1, got \(jobs)") }
    guard threads >= 1 else { throw EngineError("--threads must be at least 1, got \(threads)") }
    if let bad = lotteryFlags.first(where: { f in
      Self.reserved.contains { f == $0 || f.hasPrefix($0 + "=") }
    }) {
      throw EngineError("\(bad) is set by lth scaling sweep for every point; leave it out")
    }
    let ds: [Int?]
    if let text = depths {
      guard fam.hasDepthKnob else {
        throw EngineError(
          "family \(family) has no depth knob (--depths): its depth is fixed by its hidden widths")
      }
      ds = try parsePositiveList(text, flag: "--depths").map { v -> Int? in
        guard v == v.rounded() else { throw EngineError("--depths must be whole numbers, got \(v)") }
        try fam.checkDepth(Int(v))
        return Int(v)
      }
    } else {
      guard !fam.hasDepthKnob else { throw EngineError("family \(family) needs --depths") }
      ds = [nil]
    }
    let ws = try parsePositiveList(widthFactors, flag: "--width-factors")
    let ns = try parsePositiveList(dataFractions, flag: "--data-fractions")
    if let bad = ns.first(where: { $0 > 1 }) {
      throw EngineError("--data-fractions must be in (0, 1], got \(bad)")
    }

    // Plan every point in this process (flags, plan and hash checked before any training).
    var points: [ScalingManifest.Point] = []
    var lotteries: [LotteryHParams] = []
    for d in ds {
      for w in ws {
        for n in ns {
          let model = try fam.model(depth: d, widthFactor: w)
          let args =
            [
              "lottery", "--model", model, "--subsample-fraction", "\(n)", "--levels", "\(levels)",
              "--replicates", "\(replicates)",
            ] + lotteryFlags
          let cmd: Lottery
          do { cmd = try Lottery.parse(Array(args.dropFirst()) + ["--output", "/"]) } catch {
            throw EngineError(
              Lottery.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)")
          }
          let h = try cmd.lottery.resolve(try cmd.training.resolve())
          points.append(
            ScalingManifest.Point(
              depth: fam.lawDepth(d), widthFactor: w, dataFraction: n, model: model,
              run: RunLayout.folderName(.lottery, hash: h.hash),
              arguments: args))
          lotteries.append(h)
        }
      }
    }
    let sweep = ScalingSweepHParams(
      family: family, depths: ds.compactMap { $0 }, widthFactors: ws, dataFractions: ns,
      pointRuns: points.map(\.run))
    let root = RunLayout.root(.scaling, output: output, hash: sweep.hash)
    return (root, sweep, points, lotteries)
  }

  /// Claims the sweep folder, writes the manifest and records the command when there is
  /// work left; returns the folder's lock.
  func open(_ root: String, _ sweep: ScalingSweepHParams, _ points: [ScalingManifest.Point]) throws -> (
    FileLock, [ScalingManifest.Point], CommandRecord?
  ) {
    let (lock, _) = try RunStore.openExperiment(
      output: output, root: root, hparamsJSON: sweep.canonicalJSON(), kind: "scaling", convBackends: nil)
    try ScalingManifest(family: family, levels: levels, replicates: replicates, points: points).write(
      to: root)
    let unfinished = points.filter { p in
      (1...replicates).contains { r in
        !FileManager.default.fileExists(
          atPath: RunFile.summary.path(in: RunLayout.main(RunLayout.level(root + "/" + p.run, replicate: r, level: levels))))
      }
    }
    let record = unfinished.isEmpty ? nil : try RunStore.recordCommand(root)
    return (lock, unfinished, record)
  }

  func run() throws {
    runOrFail {
      let (root, sweep, points, _) = try plan()
      let perJob = max(1, threads / jobs)
      let (lock, unfinished, record) = try open(root, sweep, points)
      defer { withExtendedLifetime(lock) {} }
      try CommandRecord.perform(record) { try runPoints(root, points, unfinished, perJob) }
    }
  }

  func runPoints(_ root: String, _ points: [ScalingManifest.Point], _ unfinished: [ScalingManifest.Point], _ perJob: Int)
    throws
  {
    do {
      if !quiet {
        say(
          "sweep \(root): \(points.count) points (\(unfinished.count) unfinished), \(levels + 1) levels, \(replicates) replicate\(replicates == 1 ? "" : "s"), \(jobs) job\(jobs == 1 ? "" : "s") x \(perJob) thread\(perJob == 1 ? "" : "s")"
        )
      }
      let started = Date()
      // Every point is one phase: its whole lottery (levels and replicates) in one process.
      let graph = try JobGraph(
        command: CommandLine.arguments, root: root,
        phases: points.map { p in
          Phase(
            id: "\(p.model).n\(ScalingFit.text(p.dataFraction))", kind: "point",
            arguments: p.arguments + ["--output", root], dependencies: [],
            marker: RunFile.summary.path(in: RunLayout.main(RunLayout.level(root + "/" + p.run, replicate: replicates, level: levels))))
        })
      // A point whose last replicate's last level exists may still miss an earlier
      // replicate: every point runs (finished ones return at once).
      var all = graph
      for i in all.phases.indices { all.phases[i].done = false }
      let failures = try LocalExecutor.run(
        all, .init(jobs: jobs, threads: perJob, passThrough: jobs == 1, quiet: quiet), say: say)
      if let first = failures.first {
        throw EngineError("\(failures.count) of \(points.count) points failed; first: \(first)")
      }
      if !quiet {
        say(
          String(
            format: "every point finished (%.0f s); fit with: lth scaling fit %@",
            Date().timeIntervalSince(started), root))
      }
      say("sweep: \(root)")
    }
  }
}

/// One line on stdout, written at once (not held in stdio's buffer when stdout is a file
/// or a pipe, so a sweep's log shows progress as it happens).
func say(_ line: String) {
  FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

struct ScalingFitCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fit",
    abstract: "Fit the law per configuration and (with --joint) across them; write \(RunFile.fit.rawValue).",
    discussion: """
      Minimises the squared relative deviation (err_hat - err) / err by Levenberg-Marquardt \
      from a fixed grid of starts; parameter uncertainty is the standard deviation over \
      bootstrap refits (replicates resampled within each point). --holdout leaves out the \
      configurations it matches, fits the joint law on the rest and reports the relative \
      error of its predictions on them (with their measured e_np).
      """)
  @Argument(help: "The sweep folder (scaling_<hash>).") var sweep: String
  @Flag(help: "Fit the joint law across depth and width (the invariant m = l^phi w^psi d).") var joint = false
  @Option(help: "Leave out configurations, e.g. \"width>=1\" or \"depth>=20,data<1\" (implies --joint).")
  var holdout: String?
  @Option(help: "Bootstrap refits for the parameter uncertainty.") var bootstrap = 100
  @Option(help: "Where to write the fit (default: SWEEP/\(RunFile.fit.rawValue)).") var output: String?
  @Flag(help: "Print the fit as one JSON object (last line).") var json = false

  func run() throws {
    runOrFail {
      guard bootstrap >= 0 else { throw EngineError("--bootstrap must be non-negative, got \(bootstrap)") }
      let h = try holdout.map { try Holdout(parsing: $0) }
      let fit = try ScalingAnalysis.fit(sweep: sweep, joint: joint, holdout: h, resamples: bootstrap)
      try RunStore.writeJSON(fit, to: output ?? RunFile.fit.path(in: sweep))
      if json {
        print(jsonLine(fit))
        return
      }
      print(ScalingText.summary(fit))
      print("fit: \(output ?? RunFile.fit.path(in: sweep))")
    }
  }
}

struct ScalingPredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract:
      "Predicted error of a configuration at a density, or the smallest network reaching a target error.",
    discussion: """
      The last line is the predicted error as a fraction (or, with --json, one JSON object). \
      e_np is the configuration's measured one; a configuration the sweep did not measure is \
      refused (its e_np is not extrapolated). A density or other knob outside the fitted \
      ranges is predicted and labelled an extrapolation.
      """)
  @Option(help: "A \(RunFile.fit.rawValue) written by lth scaling fit.") var fit: String
  @Option(help: "The family the fit must be of (a check).") var family: String?
  @Option(help: "Depth l (families with a depth knob).") var depth: Double?
  @Option(help: "Width factor w.") var widthFactor = 1.0
  @Option(help: "Data fraction n.") var dataFraction = 1.0
  @Option(help: "Density d in (0, 1].") var density: Double?
  @Option(help: "Find the smallest network (remaining weights) predicted to reach this error.")
  var targetError: Double?
  @Flag(help: "Print one JSON object.") var json = false

  func run() throws {
    runOrFail {
      guard let bytes = try? AtomicFile.read(fit),
        let obj = try? JSONDecoder().decode(ScalingFitResult.self, from: Data(bytes)), obj.kind == "scaling",
        obj.error == nil
      else { throw RunError("\(fit) is not a fit file written by lth scaling fit") }
      let fam = obj.family
      if let family, family != fam { throw EngineError("\(fit) is a fit of family \(fam), not \(family)") }
      let f = try ScalingFamily(fam)
      if let t = targetError {
        guard t > 0, t < 1 else { throw EngineError("--target-error must be in (0, 1), got \(t)") }
        guard density == nil, depth == nil else {
          throw EngineError(
            "--target-error searches depth, width and density; leave out --depth and --density")
        }
        let best = try ScalingAnalysis.smallest(fit: obj, target: t, data: dataFraction)
        if json {
          print(jsonLine(best))
        } else {
          print(
            "smallest network predicted to reach error \(t): \(best.model) at density \(String(format: "%.4g", best.density)), \(best.remainingWeights) of \(best.prunableWeights) prunable weights"
          )
          print(String(format: "%.6f", best.predictedError))
        }
        return
      }
      guard let density else { throw EngineError("give --density (or --target-error)") }
      let l: Double
      if f.hasDepthKnob {
        guard let depth else { throw EngineError("family \(fam) needs --depth") }
        try f.checkDepth(Int(depth))
        l = depth
      } else {
        guard depth == nil else { throw EngineError("family \(fam) has no depth knob; leave out --depth") }
        l = f.lawDepth(nil)
      }
      let p = try ScalingAnalysis.predict(
        fit: obj, depth: l, width: widthFactor, data: dataFraction, density: density)
      if json {
        print(
          jsonLine(
            ScalingPrediction(
              predictedError: p.error, eNP: p.eNP, eNPSource: p.eNPSource, extrapolation: !p.extrapolation.isEmpty,
              outside: p.extrapolation, depth: l, widthFactor: widthFactor, dataFraction: dataFraction,
              density: density, family: fam)))
        return
      }
      print("e_np \(String(format: "%.4f", p.eNP)) (\(p.eNPSource))")
      if !p.extrapolation.isEmpty { print("extrapolation: " + p.extrapolation.joined(separator: "; ")) }
      print(String(format: "%.6f", p.error))
    }
  }
}

/// The human summary of a fit.
enum ScalingText {
  static func pct(_ v: Double?) -> String { v.map { String(format: "%.2f%%", $0 * 100) } ?? "-" }

  static func params(_ p: LawParameters) -> String {
    ["e_up", "gamma", "p", "phi", "psi"].compactMap { k -> String? in
      guard let o = p[k], o.fitted else { return nil }
      let s = o.std.map { " ± " + String(format: "%.3g", $0) } ?? ""
      return "\(k) \(String(format: "%.4g", o.value))\(s)"
    }.joined(separator: ", ")
  }

  static func summary(_ fit: ScalingFitResult) -> String {
    var lines: [String] = []
    let configs = fit.configurations ?? []
    lines.append(
      "family \(fit.family): \(configs.count) configurations, \(fit.points?.count ?? 0) points; seed-to-seed noise \(pct(fit.seedNoise))"
    )
    var rows: [[String]] = []
    for c in configs {
      rows.append([
        c.label, String(format: "%.4f", c.eNP), c.parameters.map(params) ?? (c.error ?? "-"),
        pct(c.meanRelativeDeviation), pct(c.meanAbsRelativeDeviation), pct(c.stdRelativeDeviation),
        c.heldOut ? "yes" : "",
      ])
    }
    lines += Results.grid(
      ["configuration", "e_np", "single fit", "mean dev", "mean |dev|", "std dev", "held out"], rows)
    lines.append(
      "single fits: relative deviation mean \(pct(fit.singleMeanRelativeDeviation)), mean |.| \(pct(fit.singleMeanAbsRelativeDeviation)), std \(pct(fit.singleStdRelativeDeviation))"
    )
    if fit.mode == "joint", case .joint(let p) = fit.parameters {
      lines.append("joint fit: \(params(p))")
      lines.append(
        "joint fit: relative deviation mean \(pct(fit.meanRelativeDeviation)), mean |.| \(pct(fit.meanAbsRelativeDeviation)), std \(pct(fit.stdRelativeDeviation))"
      )
    }
    if let h = fit.holdout {
      lines.append(
        "held out \(h.text) (\(h.configurations.joined(separator: "; "))): mean |relative error| \(pct(h.meanRelativeError)), mean \(pct(h.meanRelativeDeviation)), std \(pct(h.stdRelativeError)) over \(h.points) points"
      )
    }
    if let m = fit.unfinishedConfigurations, !m.isEmpty {
      lines.append("not fitted (level 0 unfinished): \(m.joined(separator: "; "))")
    }
    for w in fit.warnings ?? [] { lines.append("warning: " + w) }
    return lines.joined(separator: "\n")
  }
}

extension ScalingSweepCommand: Plannable {
  /// One lottery graph per point: replicate R, level L of every point, each after level
  /// L-1 of its replicate (ids `MODEL.nN.rR.LL`). The sweep's own `--jobs` runs whole
  /// points instead (one process per point, fewer data loads).
  func phases(arguments: [String]) throws -> (root: String, phases: [Phase]) {
    let (root, sweep, points, lotteries) = try plan()
    let plan = ScalingSweepPlan(
      sweep, root: root,
      points: zip(points, lotteries).map { p, h in
        (
          "\(p.model).n\(ScalingFit.text(p.dataFraction))",
          LotteryPlan(h, output: root, replicates: Array(1...replicates), levels: levels)
        )
      })
    var base: [String: [String]] = [:]
    for (prefix, p) in zip(plan.points.map(\.prefix), points) {
      base[prefix] = Arguments.removing(phaseOptions, flags: phaseFlags, from: p.arguments) + ["--output", root]
    }
    // A point's prefix holds dots (`mnist_lenet_32_16.n0.1`); its phases' ids go on with `.r`.
    return (root, clusterPhases(plan) { phase in base.first { phase.id.hasPrefix($0.key + ".r") }?.value ?? [] })
  }

  /// The sweep folder and manifest exist before any phase runs (lth run, lth submit).
  func prepare() throws {
    let (root, sweep, points, _) = try plan()
    // The phases record themselves in their own folders; this command's work is the folder.
    let (_, _, record) = try open(root, sweep, points)
    try record?.finish(.finished)
  }
}
