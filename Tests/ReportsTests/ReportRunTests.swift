import Foundation
import Reports
import TestSupport
import Testing

@Suite("Reports: lth report and lth results --csv on real runs", .serialized, .tags(.endToEnd), .endToEnd)
struct ReportRunTests {
  func lastJSON(_ r: CLI.Result) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
  }

  @Test(
    "an unfinished experiment: partial levels drawn hollow, begun phases listed, commands recorded; tidy CSV")
  func unfinishedAndCSV() throws {
    let out = CLI.tempDir()
    let t = BrowserTests.training + ["--output", out]
    #expect(try CLI.run(["lottery"] + t + ["--replicates", "2", "--levels", "1"]).status == 0)
    // Replicate 1 goes one level further; replicate 2 has begun level 2 (a killed or
    // running phase leaves its folder without a summary).
    #expect(try CLI.run(["lottery"] + t + ["--replicate", "1", "--levels", "2"]).status == 0)
    let root =
      out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first {
        $0.hasPrefix("lottery_")
      }!
    try FileManager.default.createDirectory(
      atPath: root + "/replicate_2/level_2/main", withIntermediateDirectories: true)

    let obj = try lastJSON(try CLI.run(["results", root, "--json"]))
    #expect(obj["replicates_present"] as? [Int] == [1, 2])
    let unfinished = obj["unfinished"] as! [[String: Any]]
    #expect(unfinished.count == 1)
    #expect(unfinished.first?["replicate"] as? Int == 2 && unfinished.first?["level"] as? Int == 2)
    let levels = obj["levels"] as! [[String: Any]]
    #expect(levels.map { $0["replicates"] as! Int } == [2, 2, 1])
    let commands = obj["commands"] as! [[String: Any]]
    #expect(commands.count == 2)
    #expect((commands.last?["argv"] as? [String])?.contains("--replicate") == true)
    // Each command records the build that ran it.
    #expect(commands.allSatisfy { ($0["git_commit"] as? String)?.isEmpty == false })
    #expect(commands.allSatisfy { $0["lotterykit_version"] is String })
    let layers = levels[1]["layers"] as! [[String: Any]]
    #expect(
      layers.map { $0["name"] as! String } == ["fc_layers.0.weight", "fc_layers.1.weight", "fc.weight"])

    let page = out + "/r.html"
    let r = try CLI.run(["report", root, "--output", page])
    #expect(r.status == 0 && r.stdout.hasPrefix("report: /"), "\(r.stderr)")
    let html = try String(contentsOfFile: page, encoding: .utf8)
    #expect(html.contains("class=\"warn unfinished\"") && html.contains("replicate 2 level 2 main"))
    // Level 2 has 1 of 2 replicates: its marker is hollow, the others are not.
    #expect(html.components(separatedBy: "class=\"point partial\"").count - 1 >= 1)
    #expect(html.contains("(1 of 2 replicates finished)"))
    #expect(html.contains("--replicate 1 --levels 2"))

    // Tidy CSV: one row per replicate, level, branch and metric, the values of the JSON.
    let csv = try CLI.run(["results", root, "--csv"])
    #expect(csv.status == 0)
    let rows = csv.stdout.split(separator: "\n").map {
      $0.split(separator: ",", omittingEmptySubsequences: false)
    }
    #expect(rows[0].joined(separator: ",") == TidyCSV.header)
    let body = rows.dropFirst()
    // 5 finished (replicate, level) runs; early_stop_step and early_stop_test_accuracy are
    // empty without a validation split.
    #expect(body.count == 5 * 4)
    for level in levels {
      for p in level["per_replicate"] as! [[String: Any]] {
        let match = body.first {
          $0[2] == "\(p["replicate"]!)" && $0[3] == "\(level["level"]!)" && $0[8] == "test_accuracy"
        }
        #expect(match.map { Double($0[9])! } == p["test_accuracy"] as? Double)
      }
    }
  }

  @Test("bad input: one clear line and a non-zero exit, nothing written")
  func badInput() throws {
    let out = CLI.tempDir()
    expectOneLineError(try CLI.run(["report", out]), "is not a run folder")
    #expect(try CLI.run(["train"] + BrowserTests.training + ["--output", out]).status == 0)
    let train =
      out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first { $0.hasPrefix("train_") }!
    expectOneLineError(try CLI.run(["report", train]), "holds a train run")
    expectOneLineError(try CLI.run(["results", train, "--csv"]), "holds a train run")
    expectOneLineError(try CLI.run(["report", train, "--output", out + "/x.txt"]), "holds a train run")
    expectOneLineError(try CLI.run(["results", out, "--json", "--csv"]), "either --json or --csv")
    #expect(!FileManager.default.fileExists(atPath: train + "/report.html"))
  }
}
