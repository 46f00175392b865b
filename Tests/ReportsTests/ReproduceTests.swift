import Analysis
import Experiments
import Foundation
import Reports
import TestSupport
import Testing

/// `lth reproduce`: the paper registry, planning, and one whole reproduction on a tiny
/// generated CIFAR-10 whose finding is recomputed here from `lth results --json`.
@Suite("lth reproduce", .serialized, .tags(.endToEnd), .endToEnd)
struct ReproduceTests {
  @Test("every paper is registered once; its experiments have unique names and refer only to earlier ones")
  func registry() throws {
    #expect(Papers.ids == ["lth", "renda", "lmc", "pai", "scaling"])
    for p in Papers.all {
      for scale in ReproductionScale.allCases {
        let s = ReproductionSettings(scale: scale, dataset: nil, trainSize: 60_000)
        let experiments = try p.experiments(s)
        #expect(!experiments.isEmpty)
        var seen: [String] = []
        for e in experiments {
          #expect(!seen.contains(e.name), "\(p.id): \(e.name) twice")
          for a in e.arguments where a.hasPrefix("@") {
            #expect(
              seen.contains(String(a.dropFirst())), "\(p.id)/\(e.name): \(a) is not an earlier experiment")
          }
          for n in e.needs {
            #expect(
              seen.contains { n.hasPrefix($0 + ".") }, "\(p.id)/\(e.name) needs \(n) of no earlier experiment"
            )
          }
          if scale == .quick, let i = e.arguments.firstIndex(of: "--replicates") {
            #expect(Int(e.arguments[i + 1])! >= 2, "\(p.id)/\(e.name): quick runs at least 2 replicates")
          }
          seen.append(e.name)
        }
      }
    }
  }

  @Test("lth plan reproduce plans every paper at quick scale as one graph with prefixed phases")
  func plans() throws {
    let out = CLI.tempDir()
    for p in Papers.ids {
      let r = try CLI.run(["plan", "--json", "reproduce", p, "--output", out])
      #expect(r.status == 0, "\(p): \(r.stderr)")
      let graph = try JSONDecoder().decode(
        JobListing.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
      #expect(graph.phases.count > 10, "\(p): \(graph.phases.count) phases")
      let names = Set(
        try Papers.named(p).experiments(ReproductionSettings(scale: .quick, dataset: nil, trainSize: 60_000))
          .map(\.name))
      for ph in graph.phases {
        #expect(names.contains { ph.id.hasPrefix($0 + ".") }, "\(p): phase \(ph.id) has no experiment prefix")
      }
    }
    // The LMC of an IMP subnetwork waits for its lottery level.
    let r = try CLI.run(["plan", "--json", "reproduce", "lmc", "--output", out])
    let graph = try JSONDecoder().decode(
      JobListing.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
    let imp = try #require(graph.phases.first { $0.id == "lenet-imp.r1.k0" })
    #expect(imp.dependencies.contains("lenet-lottery.r1.L8"))
  }

  @Test("bad requests get one line and a non-zero exit")
  func refusals() throws {
    let out = CLI.tempDir()
    for (args, message) in [
      (["reproduce", "nosuch", "--output", out], "unknown paper 'nosuch'"),
      (["reproduce", "lth", "--replicates", "1", "--output", out], "at least 2 replicates"),
      (
        ["reproduce", "lth", "--dataset", "cifar10", "--data-dir", out + "/none", "--output", out], "cifar10"
      ),
    ] {
      let r = try CLI.run(args)
      #expect(r.status != 0)
      #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
      #expect(r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
    }
  }

  @Test("--scale full prints its estimate first and refuses over an hour without --yes, before any training")
  func fullScaleEstimate() throws {
    let data = try Self.tinyCIFAR(perBatch: 20, test: 20)
    let out = CLI.tempDir()
    // 50 replicates of 105 phases of 50,000 iterations: far over an hour on any machine.
    let r = try CLI.run([
      "reproduce", "lth", "--scale", "full", "--dataset", "cifar10", "--data-dir", data, "--output", out,
      "--replicates", "50", "--nodes", "4",
    ])
    #expect(r.status != 0)
    #expect(r.stdout.contains("estimated: ") && r.stdout.contains("on 4 Slurm nodes"), "\(r.stdout)")
    #expect(r.stderr.contains("give --yes"), "\(r.stderr)")
    let made = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
    #expect(made.isEmpty, "nothing is created before the run is accepted: \(made)")
  }

  /// A CIFAR-10 folder of `perBatch` records in each of the 5 training files and `test`
  /// in the test file; the label is learnable (each class has its own brightness).
  static func tinyCIFAR(perBatch: Int, test: Int) throws -> String {
    let d = CLI.tempDir() + "/cifar"
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    func records(_ n: Int, offset: Int) -> Data {
      var out: [UInt8] = []
      for i in 0..<n {
        let label = (i + offset) % 10
        out.append(UInt8(label))
        out += (0..<3072).map { UInt8((label * 23 + ($0 * 7 + i * 13) % 17) % 256) }
      }
      return Data(out)
    }
    for b in 1...5 {
      try records(perBatch, offset: b).write(to: URL(fileURLWithPath: "\(d)/data_batch_\(b).bin"))
    }
    try records(test, offset: 0).write(to: URL(fileURLWithPath: "\(d)/test_batch.bin"))
    return d
  }

  @Test("lth reproduce lth on a tiny generated CIFAR-10: findings match a recomputation; a rerun resumes")
  func tinyCIFARReproduction() throws {
    let data = try Self.tinyCIFAR(perBatch: 40, test: 100)
    let out = CLI.tempDir()
    let args = [
      "reproduce", "lth", "--dataset", "cifar10", "--data-dir", data, "--output", out, "--replicates", "2",
      "--json",
      "--quiet",
    ]
    let first = try CLI.run(args)
    try #require(first.status == 0, "\(first.stderr)")
    let line = String(first.stdout.split(separator: "\n").last ?? "")
    let result = try JSONDecoder().decode(ReproductionResult.self, from: Data(line.utf8))
    #expect(result.paper == "lth" && result.scale == .quick && result.dataset == "cifar10")
    #expect(result.findings.map(\.id) == ["lth.matching-density", "lth.reinit-below", "lth.faster-down-to"])
    for f in result.findings {
      #expect(f.referenceValue == nil, "a stored reference is for the default data set only")
      #expect(f.replicates == 2)
      #expect(!f.tolerance.isEmpty && !f.claim.isEmpty)
    }
    // The top-level keys are docs/results-schema.md's `keys reproduce`.
    let doc = try #require(try ResultSchemaTests.documented()["reproduce"])
    let keys = Set((try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]).keys)
    #expect(
      doc.required.isSubset(of: keys) && keys.isSubset(of: doc.required.union(doc.optional)),
      "\(keys.sorted())")

    // lth.matching-density again, from the ticket run's own results: walking the levels
    // from the densest, the last one whose mean early-stop accuracy is within 1 point of
    // dense before the first that is not.
    let ticket = try #require(result.runDirs["ticket"])
    let r = try CLI.run(["results", ticket, "--json"])
    let rows = try JSONDecoder().decode(
      RunResults.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8)
    ).rows
    #expect(rows.count == 17)
    func mean(_ row: ResultRow) -> Double {
      let v = row.perReplicate.map { $0.earlyStopTestAccuracy! }
      return v.reduce(0, +) / Double(v.count)
    }
    let dense = mean(rows.first { $0.level == 0 }!)
    var lowest: Double? = nil
    for l in 1...16 {
      let row = rows.first { $0.level == l }!
      if mean(row) < dense - 0.01 { break }
      lowest = row.density! * 100
    }
    let matching = result.findings[0]
    #expect(matching.lotterykitValue == lowest)
    #expect(matching.verdict == ((lowest ?? 100) <= 7.2 ? .holds : .differs))
    // The random-reinit gap at the sparsest control level (15).
    let row15 = rows.first { $0.level == 15 }!
    let reinit = try #require(row15.branches?["random-reinit"])
    let gap = (mean(row15) - mean(reinit)) * 100
    #expect(abs(result.findings[1].lotterykitValue! - gap) < 1e-9)

    // A rerun trains nothing and gives the same findings (and the first run's wall clock).
    let second = try CLI.run(args)
    #expect(second.status == 0, "\(second.stderr)")
    let again = try JSONDecoder().decode(
      ReproductionResult.self, from: Data((second.stdout.split(separator: "\n").last ?? "").utf8))
    #expect(again.findings == result.findings && again.seconds == result.seconds)

    // The report draws the findings.
    let root = (ticket as NSString).deletingLastPathComponent
    let folder = try #require(
      try FileManager.default.contentsOfDirectory(atPath: root).first { $0.hasPrefix("reproduce_") })
    let page = CLI.tempDir() + "/r.html"
    let rep = try CLI.run(["report", root + "/" + folder, "--output", page])
    #expect(rep.status == 0, "\(rep.stderr)")
    let html = try String(contentsOfFile: page, encoding: .utf8)
    for f in result.findings { #expect(html.contains(f.id)) }
    #expect(html.contains("Findings: The Lottery Ticket Hypothesis"))
  }
}

/// `lth plan --json`: the phases with their dependencies.
struct JobListing: Decodable {
  struct Entry: Decodable {
    var id: String
    var dependencies: [String]
  }
  var phases: [Entry]
}
