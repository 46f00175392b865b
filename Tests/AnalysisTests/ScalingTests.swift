import Analysis
import Engine
import Experiments
import Families
import Foundation
import NN
import TestSupport
import Testing

/// Points generated from a known law, with multiplicative noise of `noise` (a relative
/// standard deviation) per replicate, from a seeded stream.
func synthetic(
  _ law: ScalingLaw, configs: [(Configuration, Double)], levels: Int = 30, replicates: Int = 2,
  noise: Double = 0.02,
  seed: UInt64 = 1
) -> [ScalingPoint] {
  var rng = RandomStream(seed: seed, purpose: "scaling-test")
  var out: [ScalingPoint] = []
  for (c, eNP) in configs {
    for i in 0...levels {
      let d = pow(0.8, Double(i))
      let truth = law.error(eNP: eNP, density: d, depth: c.depth, width: c.width)
      let reps = (0..<replicates).map { _ in truth * (1 + noise * rng.normal()) }
      out.append(
        ScalingPoint(
          depth: c.depth, width: c.width, data: c.data, density: d,
          error: reps.reduce(0, +) / Double(replicates),
          replicateErrors: reps, eNP: eNP))
    }
  }
  return out
}

@Suite("Scaling laws: the formula, the fits, the sweep")
struct ScalingLawTests {
  @Test("limits: e_np for large density, e_up at zero, e_up (p/d)^g in between, slope -g")
  func limits() {
    let law = ScalingLaw(eUp: 0.9, gamma: 1.3, p: 1e-4)
    let eNP = 1e-4
    #expect(abs(law.error(eNP: eNP, density: 1e6) / eNP - 1) < 1e-9)
    #expect(abs(law.error(eNP: eNP, density: 1e-12) / 0.9 - 1) < 1e-9)
    // a = p (e_up/e_np)^(1/g) = 1e-4 * 9000^(1/1.3) ~ 0.11: the power law holds for p << d << a.
    let d = 3e-3
    let power = 0.9 * pow(1e-4 / d, 1.3)
    #expect(abs(law.error(eNP: eNP, density: d) / power - 1) < 0.01)
    let h = 1e-4
    let slope =
      (log(law.error(eNP: eNP, density: d * exp(h))) - log(law.error(eNP: eNP, density: d * exp(-h))))
      / (2 * h)
    #expect(abs(slope + 1.3) < 0.01, "slope \(slope)")
    // The complex-modulus form, computed with complex arithmetic, equals the real one.
    let g = law.gamma
    let a = law.p * pow(law.eUp / 0.1, 1 / g)
    for d in [1e-5, 1e-3, 0.05, 0.5, 1.0] {
      let num = (d * d + a * a).squareRoot()
      let den = (d * d + law.p * law.p).squareRoot()
      #expect(abs(law.error(eNP: 0.1, density: d) / (0.1 * pow(num / den, g)) - 1) < 1e-12)
    }
    // The joint law is the single law at the invariant m = l^phi w^psi d.
    let j = ScalingLaw(eUp: 0.9, gamma: 1.3, p: 1e-3, phi: 0.5, psi: 1.5)
    let m = pow(20, 0.5) * pow(0.25, 1.5) * 0.01
    #expect(
      j.error(eNP: 0.08, density: 0.01, depth: 20, width: 0.25)
        == ScalingLaw(eUp: 0.9, gamma: 1.3, p: 1e-3).error(eNP: 0.08, density: m))
  }

  @Test("2% noise: every documented start recovers the parameters; the fit is deterministic")
  func recovery() throws {
    let truth = ScalingLaw(eUp: 0.85, gamma: 1.2, p: 0.004)
    let c = Configuration(depth: 3, width: 1, data: 1)
    let pts = synthetic(truth, configs: [(c, 0.11)])
    let starts = ScalingFit.starts(for: pts, free: .single)
    #expect(starts.count == 24)
    for (i, s) in starts.enumerated() {
      let (law, cost, _) = ScalingFit.refine(s, pts, free: .single)
      #expect(cost.isFinite)
      #expect(abs(law.eUp / truth.eUp - 1) < 0.1, "start \(i): e_up \(law.eUp)")
      #expect(abs(law.gamma / truth.gamma - 1) < 0.1, "start \(i): gamma \(law.gamma)")
      #expect(abs(law.p / truth.p - 1) < 0.25, "start \(i): p \(law.p)")
    }
    let a = try ScalingFit.fit(pts, free: .single)
    let b = try ScalingFit.fit(pts, free: .single)
    #expect(a.law == b.law && a.start == b.start)
    // Relative deviations of the order of the noise (2% per replicate, mean of 2).
    #expect(a.meanAbsoluteDeviation < 0.03 && a.deviationStd < 0.04)
    let noise = try #require(ScalingFit.seedNoise(pts))
    #expect(abs(noise - 0.02) < 0.006, "seed noise \(noise)")
    // Bootstrap over replicates: small, finite, deterministic.
    let s1 = ScalingFit.bootstrap(pts, free: .single, from: a.law, resamples: 30)
    #expect(s1 == ScalingFit.bootstrap(pts, free: .single, from: a.law, resamples: 30))
    #expect((s1["gamma"] ?? .infinity) < 0.1 && (s1["e_up"] ?? .infinity) < 0.1)
  }

  @Test("the joint fit recovers phi and psi across depths and widths")
  func joint() throws {
    // The transition (p = 0.01 in m, a ~ 0.05) lies inside the measured m of every
    // configuration: m runs from about 0.002 (l = 8, w = 0.5, d = 0.8^30) to 19.
    let truth = ScalingLaw(eUp: 0.88, gamma: 1.5, p: 0.01, phi: 0.7, psi: 1.2)
    var configs: [(Configuration, Double)] = []
    for l in [8.0, 14, 20] {
      for w in [0.5, 1, 2] {
        configs.append((Configuration(depth: l, width: w, data: 1), 0.15 * pow(l, -0.3) * pow(w, -0.4)))
      }
    }
    let pts = synthetic(truth, configs: configs, levels: 30)
    let f = try ScalingFit.fit(pts, free: ScalingFit.Free(phi: true, psi: true))
    #expect(abs(f.law.phi - 0.7) < 0.1, "phi \(f.law.phi)")
    #expect(abs(f.law.psi - 1.2) < 0.1, "psi \(f.law.psi)")
    #expect(abs(f.law.gamma / 1.5 - 1) < 0.1)
    #expect(f.meanAbsoluteDeviation < 0.03)
    // The e_np model of unmeasured configurations recovers the power law it was given.
    let model = try #require(UnprunedErrorModel.fit(configs))
    #expect(abs(model.depth + 0.3) < 1e-9 && abs(model.width + 0.4) < 1e-9)
  }

  @Test("degenerate inputs are clear errors, never NaN")
  func degenerate() {
    let c = Configuration(depth: 3, width: 1, data: 1)
    func pt(_ d: Double, _ e: Double) -> ScalingPoint {
      ScalingPoint(depth: 3, width: 1, data: 1, density: d, error: e, replicateErrors: [e], eNP: 0.1)
    }
    func message(_ pts: [ScalingPoint]) -> String {
      do {
        _ = try ScalingFit.fit(pts, free: .single)
        return "no error"
      } catch { return "\(error)" }
    }
    #expect(message([pt(0.5, 0.2), pt(0.4, 0.3)]).contains("2 points for 3 parameters"))
    #expect(message((0..<6).map { _ in pt(0.5, 0.2) }).contains("several densities"))
    #expect(message((0..<6).map { pt(pow(0.8, Double($0)), 0.2) }).contains("every error equals"))
    #expect(
      message((0..<6).map { pt(pow(0.8, Double($0)), $0 == 3 ? 0 : 0.2 + Double($0) / 10) }).contains(
        "not positive"))
    _ = c
  }

  @Test("--holdout conditions")
  func holdout() throws {
    let h = try Holdout(parsing: "width>=1")
    #expect(
      h.holds(Configuration(depth: 3, width: 1, data: 1))
        && !h.holds(Configuration(depth: 3, width: 0.5, data: 1)))
    let two = try Holdout(parsing: "depth<20, data==0.5")
    #expect(two.holds(Configuration(depth: 14, width: 1, data: 0.5)))
    #expect(!two.holds(Configuration(depth: 20, width: 1, data: 0.5)))
    #expect(throws: SettingError.self) { try Holdout(parsing: "height>1") }
    #expect(throws: SettingError.self) { try Holdout(parsing: "width~1") }
    #expect(throws: SettingError.self) { try Holdout(parsing: "width>=x") }
  }

  @Test("width factors mean the same in every family")
  func widthFactors() throws {
    #expect(try ModelZoo.scaled("mnist_lenet_300_100", widthFactor: 0.5) == "mnist_lenet_150_50")
    #expect(try ModelZoo.scaled("mnist_lenet_300_100", widthFactor: 2) == "mnist_lenet_600_200")
    #expect(try ModelZoo.scaled("cifar_resnet_20", widthFactor: 0.25) == "cifar_resnet_20_4")
    #expect(try ModelZoo.scaled("cifar_resnet_20_64", widthFactor: 0.5) == "cifar_resnet_20_32")
    #expect(try ModelZoo.scaled("cifar_conv_2", widthFactor: 0.5) == "cifar_conv_2_w0.5")
    #expect(try ModelZoo.scaled("cifar_conv_2_w0.5", widthFactor: 2) == "cifar_conv_2")
    #expect(try ModelZoo.scaled("cifar_vgg_11", widthFactor: 1) == "cifar_vgg_11")
    let conv: Network<Float> = try ModelZoo.make("cifar_conv_2_w0.5")
    let shapes = Dictionary(uniqueKeysWithValues: conv.parameters.map { ($0.0, $0.1.value.shape) })
    #expect(
      shapes["conv_layers.0.weight"] == [32, 3, 3, 3] && shapes["fc_layers.0.weight"] == [128, 32 * 16 * 16])
    #expect(shapes["fc.weight"] == [10, 128])
    let vgg: Network<Float> = try ModelZoo.make("cifar_vgg_11_w0.25")
    #expect(vgg.parameters.first { $0.0 == "layers.0.conv.weight" }?.1.value.shape == [16, 3, 3, 3])
    #expect(try Recipe.forModel("cifar_conv_2_w0.5") == Recipe.forModel("cifar_conv_2"))
    #expect(throws: EngineError.self) { try ModelZoo.scaled("mnist_lenet_300_100", widthFactor: 0) }
    let f = try ScalingFamily("cifar_resnet")
    #expect(try f.model(depth: 14, widthFactor: 2) == "cifar_resnet_14_32" && f.lawDepth(14) == 14)
    #expect(try ScalingFamily("mnist_lenet").lawDepth(nil) == 3)
    #expect(throws: EngineError.self) { try f.checkDepth(15) }
  }
}

@Suite("Scaling fit statistics and warnings")
struct ScalingWarningTests {
  @Test("mu and sigma are over pruned points only; the dense points come separately")
  func prunedStatistics() {
    let st = ScalingAnalysis.statistics(deviations: [0, 0, 0.1, -0.3], densities: [1, 1, 0.5, 0.2])
    #expect(st.mean == (0.1 - 0.3) / 2 && st.meanAbs == 0.2 && st.denseMeanAbs == 0)
    #expect(abs(st.std! - ScalingFit.std([0.1, -0.3])) < 1e-15)
  }

  @Test("unidentified parameters and a sweep that never leaves the plateau are named")
  func warnings() {
    func pt(_ w: Double, _ d: Double, _ e: Double) -> ScalingPoint {
      ScalingPoint(depth: 3, width: w, data: 1, density: d, error: e, replicateErrors: [e], eNP: 0.14)
    }
    let flat = [pt(1, 1, 0.14), pt(1, 0.5, 0.141), pt(1, 0.17, 0.143), pt(0.5, 1, 0.14), pt(0.5, 0.17, 0.145)]
    let gamma = LawParameter(value: 9.3e12, std: 1.7e14, fitted: true)
    let params: LawParameters = [
      "e_up": LawParameter(value: 0.9, std: 0.01, fitted: true), "gamma": gamma,
      "p": LawParameter(value: 0.2, std: 0.01, fitted: true), "phi": LawParameter(value: 0, std: 5, fitted: false),
    ]
    let w = ScalingAnalysis.warnings(parameters: [(nil, params)], points: flat, seedNoise: 0.01)
    #expect(w.count == 2, "\(w)")
    #expect(w[0].hasPrefix("gamma = ") && w[0].contains("not identified"))
    #expect(w[1].contains("never reaches the power-law region"))
    // A sweep that reaches the power-law region, with identified parameters: no warning.
    let steep = [pt(1, 1, 0.14), pt(1, 0.05, 0.4), pt(0.5, 1, 0.14), pt(0.5, 0.05, 0.5)]
    let ok: LawParameters = ["e_up": LawParameter(value: 0.9, std: 0.01, fitted: true)]
    #expect(ScalingAnalysis.warnings(parameters: [("l=3 w=1 n=1", ok)], points: steep, seedNoise: 0.01).isEmpty)
  }
}

@Suite("Scaling laws: lth scaling sweep, fit and predict", .serialized, .tags(.endToEnd), .endToEnd)
struct ScalingCLITests {
  static let grid = [
    "--family", "mnist_lenet_64_32", "--width-factors", "0.5,1", "--data-fractions", "0.1", "--levels", "5",
    "--replicates", "2", "--dataset", "synthetic", "--training-steps", "3ep", "--pruning-fraction", "0.5",
    "--quiet",
  ]

  func sweepRoot(_ out: String) throws -> String {
    out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first { $0.hasPrefix("scaling_") }!
  }

  /// Every point's results (reproducible keys) and the fit's parameters.
  func state(_ out: String) throws -> NSDictionary {
    let root = try sweepRoot(out)
    let manifest = try ScalingManifest.read(root)
    var o: [String: Any] = [:]
    for p in manifest.points {
      let r = try lastJSONObject(try CLI.run(["results", root + "/" + p.run, "--json"]))
      o[p.run] = Results.reproducible(r)
    }
    let fit = try lastJSONObject(
      try CLI.run(["scaling", "fit", root, "--joint", "--json", "--bootstrap", "5"]))
    o["fit"] = ["parameters": fit["parameters"]!, "points": Results.reproducible(fit["points"]!)]
    return o as NSDictionary
  }

  @Test(
    "a sweep: manifest, one lottery run per point, --jobs 2 equals --jobs 1; SIGKILL then rerun is identical")
  func sweepAndResume() throws {
    let ref = CLI.tempDir()
    let r = try CLI.run(
      ["scaling", "sweep"] + Self.grid + ["--output", ref, "--jobs", "2", "--threads", "2"])
    #expect(r.status == 0, "\(r.stderr)")
    let root = try sweepRoot(ref)
    let manifest = try ScalingManifest.read(root)
    #expect(manifest.points.map(\.model) == ["mnist_lenet_32_16", "mnist_lenet_64_32"])
    #expect(manifest.points.allSatisfy { $0.depth == 3 && $0.dataFraction == 0.1 })
    for p in manifest.points {
      #expect(
        FileManager.default.fileExists(atPath: "\(root)/\(p.run)/replicate_2/level_5/main/summary.json"))
    }
    let refState = try state(ref)

    let one = CLI.tempDir()
    #expect(
      try CLI.run(["scaling", "sweep"] + Self.grid + ["--output", one, "--jobs", "1", "--threads", "1"])
        .status == 0)
    #expect(try state(one) == refState, "--jobs 1 and --jobs 2 differ")

    let t0 = Date()
    _ = try CLI.run(["scaling", "sweep"] + Self.grid + ["--output", CLI.tempDir(), "--jobs", "2"])
    let duration = Date().timeIntervalSince(t0)
    var rng = RandomStream(seed: 5, purpose: "scaling-kills")
    let out = try CLI.killAndRerun(kills: 2, duration: duration, rng: &rng, fraction: 0.1...0.9) {
      out, t in
      let k = try CLI.run(["scaling", "sweep"] + Self.grid + ["--output", out, "--jobs", "2"], killAfter: t)
      if k.signaled {
        // The children died with the sweep: nothing holds a lock for the rerun.
        usleep(200_000)
        return false
      }
      #expect(k.status == 0, "\(k.stderr)")
      return true
    }.output
    #expect(try state(out) == refState)
  }

  @Test("fit, holdout, predict and their bad input: one line, non-zero exit")
  func fitAndPredict() throws {
    let out = CLI.tempDir()
    #expect(try CLI.run(["scaling", "sweep"] + Self.grid + ["--output", out, "--jobs", "2"]).status == 0)
    let root = try sweepRoot(out)
    let fit = try lastJSONObject(try CLI.run(["scaling", "fit", root, "--holdout", "width>=1", "--json"]))
    for key in [
      "parameters", "mean_relative_deviation", "std_relative_deviation", "seed_noise", "points",
      "holdout_mean_relative_error",
    ] {
      #expect(fit.keys.contains(key), "\(key)")
    }
    #expect(fit["held_out_configurations"] as? [String] == ["l=3 w=1 n=0.1"])
    #expect((fit["points"] as! [Any]).count == 2 * 6)
    #expect(FileManager.default.fileExists(atPath: root + "/fit.json"))
    let text = try CLI.run(["scaling", "fit", root])
    #expect(text.status == 0 && text.stdout.contains("seed-to-seed noise"), "\(text.stderr)")

    let p = try CLI.run([
      "scaling", "predict", "--fit", root + "/fit.json", "--width-factor", "0.5", "--data-fraction", "0.1",
      "--density", "0.1",
    ])
    #expect(p.status == 0, "\(p.stderr)")
    let value = Double(p.stdout.split(separator: "\n").last!)
    #expect(value != nil && value! > 0 && value! < 1)
    #expect(!p.stdout.contains("extrapolation"))
    // Single-network fits predict their own configurations only.
    let wide = [
      "scaling", "predict", "--fit", root + "/fit.json", "--width-factor", "4", "--density", "0.1",
      "--data-fraction", "0.1", "--json",
    ]
    expectOneLineError(try CLI.run(wide), "single-network fits only")
    #expect(try CLI.run(["scaling", "fit", root, "--joint"]).status == 0)
    // An unmeasured configuration's e_np is not extrapolated; a density beyond the fitted
    // range is predicted and labelled an extrapolation.
    expectOneLineError(try CLI.run(wide), "does not extrapolate")
    let low = [
      "scaling", "predict", "--fit", root + "/fit.json", "--width-factor", "0.5", "--density", "0.0001",
      "--data-fraction", "0.1", "--json",
    ]
    let x = try lastJSONObject(try CLI.run(low))
    #expect(
      x["extrapolation"] as? Bool == true && (x["outside"] as? [String])?.first?.contains("density") == true)
    #expect(x["e_np_source"] as? String == "measured")

    // The report draws the sweep.
    let page = out + "/s.html"
    #expect(try CLI.run(["report", root, "--output", page]).status == 0)
    let html = try String(contentsOfFile: page, encoding: .utf8)
    #expect(html.contains("Predicted against measured test error") && html.contains("held out"))

    expectOneLineError(
      try CLI.run(["scaling", "sweep", "--family", "mnist_lenet", "--depths", "3", "--levels", "1"]),
      "has no depth knob")
    expectOneLineError(
      try CLI.run(["scaling", "sweep", "--family", "resnet", "--levels", "1"]), "unknown family")
    expectOneLineError(
      try CLI.run(["scaling", "sweep", "--family", "cifar_resnet", "--depths", "15", "--levels", "1"]),
      "(D - 2) % 6 == 0")
    expectOneLineError(
      try CLI.run(["scaling", "sweep"] + Self.grid + ["--output", out, "--model", "x"]),
      "--model is set by lth scaling sweep")
    expectOneLineError(
      try CLI.run([
        "scaling", "sweep", "--family", "mnist_lenet", "--width-factors", "0.5,0", "--levels", "1",
      ]),
      "--width-factors: '0' is not a positive number")
    expectOneLineError(
      try CLI.run([
        "scaling", "predict", "--fit", root + "/fit.json", "--family", "cifar_resnet", "--density", "0.1",
      ]),
      "a fit of family mnist_lenet_64_32, not cifar_resnet")
    expectOneLineError(
      try CLI.run(["scaling", "predict", "--fit", root + "/fit.json", "--depth", "20", "--density", "0.1"]),
      "no depth knob")
    expectOneLineError(
      try CLI.run(["scaling", "predict", "--fit", root + "/manifest.json", "--density", "0.1"]),
      "is not a fit file")
    expectOneLineError(
      try CLI.run(["scaling", "fit", root, "--holdout", "width>=8"]), "matches no configuration")
    expectOneLineError(try CLI.run(["scaling", "fit", out]), "not a scaling sweep folder")
    // Too few points: one level (2 densities) per configuration, 3 parameters.
    let small = CLI.tempDir()
    var few = Self.grid
    few[few.firstIndex(of: "--levels")! + 1] = "1"
    few[few.firstIndex(of: "--width-factors")! + 1] = "1"
    #expect(try CLI.run(["scaling", "sweep"] + few + ["--output", small]).status == 0)
    expectOneLineError(try CLI.run(["scaling", "fit", try sweepRoot(small)]), "points for 3 parameters")
  }
}
