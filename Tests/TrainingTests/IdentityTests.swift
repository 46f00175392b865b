import BuildInfo
import Experiments
import Foundation
import TestSupport
import Testing

/// A short run on synthetic data (50 steps).
let quickRun = [
  "train", "--model", "mnist_lenet_16", "--dataset", "synthetic", "--subsample-fraction", "0.1",
  "--training-steps", "5ep", "--eval-every", "5ep", "--threads", "2", "--quiet",
]

func readJSON(_ path: String) throws -> [String: Any] {
  try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: path)!) as! [String: Any]
}

func readJSONLine(_ line: String) throws -> [String: Any] {
  try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
}

func writeJSON(_ obj: [String: Any], _ path: String) throws {
  let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted])
  _ = FileManager.default.createFile(atPath: path, contents: d)
}

/// `git args` in the checkout these tests were built from.
func git(_ args: [String]) throws -> String {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
  p.arguments = ["git", "-C", dir] + args
  let out = Pipe()
  p.standardOutput = out
  try p.run()
  let d = out.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The hashed hyperparameters of a run folder, decoded.
func storedTraining(_ dir: String) throws -> TrainingHParams {
  let stored = try readJSON(dir + "/hparams.json")["hparams"]!
  return try JSONDecoder().decode(TrainingHParams.self, from: JSONSerialization.data(withJSONObject: stored))
}

@Suite("Run identity and provenance", .serialized, .tags(.endToEnd), .endToEnd)
struct IdentityTests {
  struct Numbers: Encodable {
    var values: [Double]
    var floats: [Float]
    var ints: [Int]
    var big: UInt64
    var text: String
    var flag: Bool
    var missing: String? = nil
    var nested: [String: Int]
  }

  @Test("canonical JSON: sorted keys, RFC 8785 numbers, fixed escapes, nil left out")
  func canonicalEncoding() throws {
    let v = Numbers(
      values: [
        1.0, 0.1, -0.0, 1e-7, 0.000001, 1e21, 123_456_789_012_345_683_968, 2.5e-5, .leastNonzeroMagnitude,
        0.3, 1.7976931348623157e308,
      ],
      floats: [0.1, 3], ints: [0, -7], big: UInt64.max, text: "a\"b\\c\n\u{01}é/", flag: true,
      nested: ["b": 2, "a": 1, "B": 3])
    let text = try CanonicalEncoder().encode(v)
    #expect(
      text
        == #"{"big":18446744073709551615,"flag":true,"floats":[0.1,3],"ints":[0,-7],"nested":{"B":3,"a":1,"b":2},"text":"a\"b\\c\n\u0001é/","values":[1,0.1,0,1e-7,0.000001,1e+21,123456789012345680000,0.000025,5e-324,0.3,1.7976931348623157e+308]}"#
    )
    #expect(throws: (any Error).self) { try CanonicalEncoder().encode([Double.nan]) }
    // SHA-256 test vector (FIPS 180-2) and folder length.
    #expect(RunHash.sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(RunHash.short("abc") == "ba7816bf8f01cfea")
  }

  /// Pins the whole scheme: if this hash changes, every run folder name changes with it.
  @Test("the run hash of fixed hyperparameters is pinned (stable across toolchains)")
  func pinnedHash() throws {
    let json = """
      {"model":"mnist_lenet_300_100","dataset":"fashion_mnist","training_steps":"2ep","batch_size":60,
       "optimizer":"adam","lr":0.0012,"momentum":0,"nesterov":false,"weight_decay":0,"schedule":"constant",
       "warmup_steps":"0it","milestones":[],"gamma":0.1,"initializer":"glorot_normal","batch_norm_init":"ones",
       "seed":0,"data_order_seed":0,"augment":false,"validation_size":0,"subsample_fraction":1,
       "random_labels_fraction":0,"eval_every":"1ep","eval_train":false}
      """
    let h = try JSONDecoder().decode(TrainingHParams.self, from: Data(json.utf8))
    #expect(
      h.canonicalJSON()
        == #"{"augment":false,"batch_norm_init":"ones","batch_size":60,"data_order_seed":0,"dataset":"fashion_mnist","eval_every":"1ep","eval_train":false,"gamma":0.1,"initializer":"glorot_normal","lr":0.0012,"milestones":[],"model":"mnist_lenet_300_100","momentum":0,"nesterov":false,"optimizer":"adam","random_labels_fraction":0,"schedule":"constant","seed":0,"subsample_fraction":1,"training_steps":"2ep","validation_size":0,"warmup_steps":"0it","weight_decay":0}"#
    )
    #expect(h.fullHash == RunHash.sha256(h.canonicalJSON()))
    #expect(h.hash == String(h.fullHash.prefix(16)))
    #expect(h.hash == "e15a4bc85ddba27f")
  }

  @Test("the git commit is embedded at build time and is the checkout's HEAD")
  func buildCommit() throws {
    let head = try git(["rev-parse", "HEAD"])
    #expect(head.count == 40)
    #expect(BuildInfo.gitCommit == head, "built from \(BuildInfo.gitCommit), checkout at \(head)")
    #expect(BuildInfo.gitCommit != "unknown" && !BuildInfo.gitCommit.isEmpty)
    #expect(BuildInfo.gitDirty != nil)
    // lth records the same commit and the machine fields.
    let out = CLI.tempDir()
    let r = try CLI.run(quickRun + ["--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    let hp = try readJSON(try CLI.runDir(out) + "/hparams.json")
    let prov = hp["provenance"] as! [String: Any]
    #expect(prov["git_commit"] as? String == head)
    #expect(prov["git_dirty"] is Bool)
    #expect(!(prov["cpu_model"] as! String).isEmpty)
    #expect(prov["blas_core"] is String && prov["blas_parallel"] is String)
    #expect((prov["float_gemm"] as? String).map { !$0.isEmpty } == true)
    #if os(Linux)
      #expect((prov["onednn_isa"] as? String).map { !$0.isEmpty } == true, "\(prov)")
    #endif
    #expect(prov.keys.contains("onednn_isa"))
    #expect(hp["hash_scheme"] as? String == RunHash.scheme)
    let dir = try CLI.runDir(out)
    #expect(dir.hasSuffix("train_" + String((hp["run_hash"] as! String).prefix(16))))
  }

  @Test("a train folder named by the old FNV hash is migrated once and reused, not retrained")
  func migrateTrainRun() throws {
    let out = CLI.tempDir()
    #expect(try CLI.run(quickRun + ["--output", out]).status == 0)
    let dir = try CLI.runDir(out)
    let h = try storedTraining(dir)
    #expect(dir.hasSuffix("train_" + h.hash))
    let legacy = out + "/train_" + h.legacyHash
    #expect(legacy != dir)
    try FileManager.default.moveItem(atPath: dir, toPath: legacy)
    let before = CLI.snapshot(legacy)
    let r = try CLI.run(quickRun + ["--output", out, "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("migrated \(legacy)"), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: legacy))
    let after = CLI.snapshot(dir)
    // Nothing retrained: every file as it was but hparams.json, which names the old folder.
    for (k, v) in before where k != "hparams.json" { #expect(after[k] == v, "\(k) changed") }
    let hp = try readJSON(dir + "/hparams.json")
    #expect(hp["migrated_from"] as? String == "train_" + h.legacyHash)
    #expect(hp["run_hash"] as? String == h.fullHash)
    let summary =
      try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8))
      as! [String: Any]
    #expect(summary["run_dir"] as? String == dir)
    // Once only.
    let again = try CLI.run(quickRun + ["--output", out])
    #expect(again.status == 0 && again.stderr.isEmpty, "\(again.stderr)")
  }

  /// A run continued by another LotteryKit may round differently (a changed kernel or loss):
  /// the continuation says so, and the run folder records which build did what.
  @Test("continuing a run another LotteryKit build worked on: one note naming both builds, never a refusal")
  func buildChange() throws {
    let out = CLI.tempDir()
    #expect(try CLI.run(quickRun + ["--output", out]).status == 0)
    let dir = try CLI.runDir(out)
    let commandsPath = dir + "/" + RunStore.commandsFile
    let recorded = try String(contentsOfFile: commandsPath, encoding: .utf8).split(separator: "\n")
    #expect(recorded.count == 1)
    let build = try readJSONLine(String(recorded[0]))["git_commit"] as! String
    // Unfinished, and last worked on by another build.
    try FileManager.default.removeItem(atPath: dir + "/summary.json")
    let other = String(repeating: "0123456789abcdef", count: 3).prefix(40)
    try (recorded.joined(separator: "\n") + "\n{\"argv\":[\"lth\"],\"git_commit\":\"\(other)\"}\n")
      .write(toFile: commandsPath, atomically: true, encoding: .utf8)
    let r = try CLI.run(quickRun + ["--output", out, "--require-same-cpu"])
    #expect(r.status == 0, "\(r.stderr)")
    if build == "unknown" {
      #expect(r.stderr.isEmpty, "\(r.stderr)")  // built outside a git checkout: nothing to compare
    } else {
      let lines = r.stderr.split(separator: "\n")
      #expect(lines.count == 1, "\(r.stderr)")
      #expect(
        lines.first?.hasPrefix(
          "note: continuing \(dir) with another LotteryKit build (last worked on by \(other.prefix(12)), this is \(build.prefix(12)))"
        ) == true, "\(r.stderr)")
    }
    let after = try String(contentsOfFile: commandsPath, encoding: .utf8).split(separator: "\n")
    #expect(after.count == 3)
    #expect(try readJSONLine(String(after[2]))["git_commit"] as? String == build)
    // This build is now the last: continuing again says nothing.
    try FileManager.default.removeItem(atPath: dir + "/summary.json")
    let again = try CLI.run(quickRun + ["--output", out])
    #expect(again.status == 0 && again.stderr.isEmpty, "\(again.stderr)")
  }

  /// Acceptance test of issue 10 item 7: a run recorded with another ISA, continued.
  @Test("continuing a run recorded on another ISA: one line, recorded, --require-same-cpu refuses")
  func machineChange() throws {
    let out = CLI.tempDir()
    #expect(try CLI.run(quickRun + ["--output", out]).status == 0)
    let dir = try CLI.runDir(out)
    // Unfinished (killed after its last checkpoint), recorded on a fake ISA.
    try FileManager.default.removeItem(atPath: dir + "/summary.json")
    var hp = try readJSON(dir + "/hparams.json")
    var prov = hp["provenance"] as! [String: Any]
    let isa = prov["onednn_isa"] as? String ?? "none"
    prov["onednn_isa"] = "isa_of_another_machine"
    hp["provenance"] = prov
    try writeJSON(hp, dir + "/hparams.json")
    let before = CLI.snapshot(dir)
    let refused = try CLI.run(quickRun + ["--output", out, "--require-same-cpu"])
    expectOneLineError(refused, "--require-same-cpu refuses to continue")
    #expect(refused.stderr.contains("onednn_isa isa_of_another_machine -> \(isa)"), "\(refused.stderr)")
    #expect(CLI.snapshot(dir) == before, "--require-same-cpu changed the run folder")
    let r = try CLI.run(quickRun + ["--output", out, "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(r.stderr)")
    #expect(
      lines.first?.hasPrefix(
        "note: continuing \(dir) on a different machine: onednn_isa isa_of_another_machine -> \(isa)")
        == true, "\(r.stderr)")
    let changes =
      try JSONSerialization.jsonObject(
        with: FileManager.default.contents(atPath: dir + "/machine_changes.json")!)
      as! [[String: Any]]
    #expect(changes.count == 1)
    let c = (changes[0]["changes"] as! [String: Any])["onednn_isa"] as! [String: Any]
    #expect(c["from"] as? String == "isa_of_another_machine" && (c["to"] as? String ?? "none") == isa)
    #expect((changes[0]["machine"] as! [String: Any])["cpu_model"] is String)
    #expect(changes[0]["command"] as? String == "train")
    let summary =
      try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8))
      as! [String: Any]
    #expect(summary["machine_changed"] as? Bool == true)
    // Finished now: nothing more to say, and a run on the same machine is never flagged.
    let again = try CLI.run(quickRun + ["--output", out, "--require-same-cpu"])
    #expect(again.status == 0 && again.stderr.isEmpty, "\(again.stderr)")
    let fresh = try CLI.run(quickRun + ["--output", CLI.tempDir(), "--require-same-cpu"])
    #expect(fresh.status == 0 && fresh.stderr.isEmpty, "\(fresh.stderr)")
  }
}
