import Experiments
import Foundation
import TestSupport
import Testing
import Training

@Suite("Command records: every command that began work, with its outcome")
struct CommandRecordTests {
  static func outcomes(_ root: String) throws -> [[String: Any]] {
    try String(contentsOfFile: RunFile.commands.path(in: root), encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
  }

  @Test("finished, failed with its error line, stopped; a killed command stays running")
  func outcomes() throws {
    let root = CLI.tempDir()
    let ok = try RunStore.recordCommand(root, arguments: ["lth", "ok"])
    try CommandRecord.perform(ok) {}
    let bad = try RunStore.recordCommand(root, arguments: ["lth", "bad"])
    #expect(throws: RunError.self) {
      try CommandRecord.perform(bad) { throw RunError("mask.safetensors is truncated\nsecond line") }
    }
    let stop = try RunStore.recordCommand(root, arguments: ["lth", "stop"])
    #expect(throws: Stopped.self) {
      try CommandRecord.perform(stop) { throw Stopped(step: 3, directory: root) }
    }
    _ = try RunStore.recordCommand(root, arguments: ["lth", "killed"])
    // Nothing to do: no record, and the body still runs.
    var ran = false
    try CommandRecord.perform(nil) { ran = true }
    #expect(ran)
    let rows = try Self.outcomes(root)
    #expect(rows.map { ($0["argv"] as! [String])[1] } == ["ok", "bad", "stop", "killed"])
    #expect(rows.map { $0["outcome"] as? String } == ["finished", "failed", "stopped", "running"])
    #expect(rows[1]["error"] as? String == "mask.safetensors is truncated")
    #expect(rows[0]["error"] == nil)
    #expect(rows.allSatisfy { $0["git_commit"] is String && $0["pid"] is Int })
  }
}
