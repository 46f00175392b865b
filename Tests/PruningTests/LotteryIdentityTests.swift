import Experiments
import Foundation
import TestSupport
import Testing

func jsonObject(_ path: String) throws -> [String: Any] {
  try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: path)!) as! [String: Any]
}

func decodeStored<T: Decodable>(_ type: T.Type, _ dir: String) throws -> T {
  let stored = try jsonObject(dir + "/hparams.json")["hparams"]!
  return try JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: stored))
}

func branchFolders(_ levelDir: String) throws -> [String] {
  try FileManager.default.contentsOfDirectory(atPath: levelDir).filter { $0.hasPrefix("branch_") }.sorted()
}

@Suite("Lottery identity, machine changes and tables", .serialized, .tags(.endToEnd), .endToEnd)
struct LotteryIdentityTests {
  @Test("branch columns are named by kind; a hash only where one kind has two sets of flags")
  func columnNames() throws {
    let out = CLI.tempDir()
    let a = lotteryBase + ["--output", out]
    #expect(try CLI.run(["lottery"] + a + ["--levels", "1"]).status == 0)
    let rr = try CLI.run(["branch", "random-reinit"] + a + ["--levels", "1"])
    #expect(rr.status == 0, "\(rr.stderr)")
    let rp = try CLI.run(["branch", "random-prune"] + a + ["--levels", "1"])
    #expect(rp.status == 0, "\(rp.stderr)")
    var header = rp.stdout.split(separator: "\n").first { $0.hasPrefix("level") }.map(String.init) ?? ""
    #expect(header.contains("random-reinit %") && header.contains("random-prune %"), "\(header)")
    #expect(!header.contains("_"), "\(header)")
    // A second random-prune branch with other flags: both random-prune columns get a hash.
    let g = try CLI.run(["branch", "random-prune"] + a + ["--levels", "1", "--layout", "global"])
    #expect(g.status == 0, "\(g.stderr)")
    header = g.stdout.split(separator: "\n").first { $0.hasPrefix("level") }.map(String.init) ?? ""
    let root = try lotteryRoot(out)
    let level1 = root + "/replicate_1/level_1"
    let prunes = try branchFolders(level1).filter { $0.hasPrefix("branch_random-prune_") }
    #expect(prunes.count == 2)
    for f in prunes {
      let hash = String(f.dropFirst("branch_random-prune_".count).prefix(8))
      #expect(header.contains("random-prune_\(hash) %"), "\(header)")
    }
    #expect(header.contains("random-reinit %") && !header.contains("random-prune %"), "\(header)")
    // JSON: the same names, each with its kind and hash.
    let r = try CLI.run(["results", root, "--json"])
    let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    let levels = obj["levels"] as! [[String: Any]]
    let branches = levels[1]["branches"] as! [String: [String: Any]]
    #expect(branches.count == 3)
    #expect(branches["random-reinit"]?["kind"] as? String == "random-reinit")
    #expect(branches.values.filter { $0["kind"] as? String == "random-prune" }.count == 2)
    #expect(obj["machine_changed"] as? Bool == false)
  }

  @Test("a lottery folder and its branches named by the old FNV hash are migrated and reused")
  func migrateLottery() throws {
    let out = CLI.tempDir()
    let a = lotteryBase + ["--output", out]
    #expect(try CLI.run(["lottery"] + a + ["--levels", "1"]).status == 0)
    #expect(try CLI.run(["branch", "random-reinit"] + a + ["--levels", "1"]).status == 0)
    let root = try lotteryRoot(out)
    let lh = try decodeStored(LotteryHParams.self, root)
    #expect(root.hasSuffix("lottery_" + lh.hash))
    let level1 = root + "/replicate_1/level_1"
    let branch = try branchFolders(level1)[0]
    let bh = try decodeStored(BranchHParams.self, level1 + "/" + branch)
    #expect(branch == bh.folderName)
    // The folders as an older build named them.
    try FileManager.default.moveItem(
      atPath: level1 + "/" + branch, toPath: level1 + "/" + bh.legacyFolderName)
    let legacyRoot = out + "/lottery_" + lh.legacyHash
    try FileManager.default.moveItem(atPath: root, toPath: legacyRoot)
    let before = CLI.snapshot(legacyRoot)
    let results = try CLI.run(["results", legacyRoot]).stdout
    let l = try CLI.run(["lottery"] + a + ["--levels", "1"])
    #expect(l.status == 0, "\(l.stderr)")
    #expect(
      l.stderr.split(separator: "\n").count == 1 && l.stderr.contains("migrated \(legacyRoot)"), "\(l.stderr)"
    )
    let b = try CLI.run(["branch", "random-reinit"] + a + ["--levels", "1"])
    #expect(b.status == 0, "\(b.stderr)")
    #expect(
      b.stderr.split(separator: "\n").count == 1 && b.stderr.contains(bh.legacyFolderName), "\(b.stderr)")
    #expect(try lotteryRoot(out) == root)
    #expect(try branchFolders(level1) == [bh.folderName])
    // Nothing retrained: the same files (but the two hparams.json that name their old folder).
    let after = CLI.snapshot(root)
    for (k, v) in before where !k.hasSuffix("hparams.json") && !k.hasSuffix("level0_key") {
      #expect(
        after[k.replacingOccurrences(of: bh.legacyFolderName, with: bh.folderName)] == v, "\(k) changed")
    }
    #expect(try jsonObject(root + "/hparams.json")["migrated_from"] as? String == "lottery_" + lh.legacyHash)
    let resultsAfter = try CLI.run(["results", root]).stdout
    #expect(resultsAfter == results)
  }

  @Test(
    "continuing a lottery on another ISA: one line, recorded, marked by lth results; --require-same-cpu refuses"
  )
  func machineChange() throws {
    let out = CLI.tempDir()
    let a = lotteryBase + ["--output", out]
    #expect(try CLI.run(["lottery"] + a + ["--levels", "1"]).status == 0)
    let root = try lotteryRoot(out)
    // Every level records the machine that trained it.
    for level in 0...1 {
      let p =
        try jsonObject("\(root)/replicate_1/level_\(level)/main/provenance.json")["provenance"]
        as! [String: Any]
      #expect(p["cpu_model"] is String && p["blas_core"] is String && p.keys.contains("onednn_isa"))
    }
    var hp = try jsonObject(root + "/hparams.json")
    var prov = hp["provenance"] as! [String: Any]
    let isa = prov["onednn_isa"] as? String ?? "none"
    prov["onednn_isa"] = "isa_of_another_machine"
    hp["provenance"] = prov
    _ = FileManager.default.createFile(
      atPath: root + "/hparams.json",
      contents: try JSONSerialization.data(withJSONObject: hp, options: [.sortedKeys]))
    // Finished work is only reported, whatever the machine.
    let done = try CLI.run(["lottery"] + a + ["--levels", "1", "--require-same-cpu"])
    #expect(done.status == 0 && done.stderr.isEmpty, "\(done.stderr)")
    let before = CLI.snapshot(root)
    let refused = try CLI.run(["lottery"] + a + ["--levels", "2", "--require-same-cpu"])
    expectOneLineError(
      refused, "onednn_isa isa_of_another_machine -> \(isa)); --require-same-cpu refuses to continue")
    let refusedBranch = try CLI.run(
      ["branch", "random-reinit"] + a + ["--levels", "1", "--require-same-cpu"])
    expectOneLineError(refusedBranch, "--require-same-cpu refuses to continue")
    #expect(CLI.snapshot(root) == before, "--require-same-cpu changed the run folder")
    let r = try CLI.run(["lottery"] + a + ["--levels", "2"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    #expect(
      r.stderr.hasPrefix(
        "note: continuing \(root) on a different machine: onednn_isa isa_of_another_machine -> \(isa)"))
    #expect(
      r.stdout.contains(
        "* part of this run was trained on another machine (onednn_isa isa_of_another_machine -> \(isa))"))
    let res = try CLI.run(["results", root, "--json"])
    let obj = try JSONSerialization.jsonObject(with: Data(res.stdout.utf8)) as! [String: Any]
    #expect(obj["machine_changed"] as? Bool == true)
    #expect((obj["machine_changes"] as? [[String: Any]])?.count == 1)
    // The recorded machine is now this one: continuing here again says nothing.
    let rr = try CLI.run(["branch", "random-reinit"] + a + ["--levels", "2", "--require-same-cpu"])
    #expect(rr.status == 0 && rr.stderr.isEmpty, "\(rr.stderr)")
    #if os(Linux)
      // A real ISA change: oneDNN capped to SSE4.1 for the next branch.
      if isa != "sse41" {
        let capped = try CLI.run(
          ["branch", "random-prune"] + a + ["--levels", "2"], shellPrefix: "export ONEDNN_MAX_CPU_ISA=SSE41;")
        #expect(capped.status == 0, "\(capped.stderr)")
        #expect(capped.stderr.contains("onednn_isa \(isa) -> sse41"), "\(capped.stderr)")
        let changes =
          try JSONSerialization.jsonObject(
            with: FileManager.default.contents(atPath: root + "/machine_changes.json")!)
          as! [[String: Any]]
        #expect(changes.count == 2 && changes[1]["command"] as? String == "branch random-prune")
      }
    #endif
  }
}
