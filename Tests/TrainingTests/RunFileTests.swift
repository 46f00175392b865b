import Experiments
import Foundation
import Testing
import Training

@Suite("Run-folder JSON files: fuzzing regressions")
struct RunFileTests {
  @Test("metrics.jsonl: CRLF lines parse; a bad line's excerpt stays on one line")
  func metrics() throws {
    let line = #"{"step":3,"epoch":0.5,"split":"test","loss":1.5,"accuracy":0.5,"lr":0.1,"seconds":2}"#
    let records = try MetricsLog.parse(Array((line + "\r\n" + line + "\r\n").utf8), path: "m")
    #expect(records.count == 2 && records[1].step == 3)
    // libFuzzer input (FuzzRunJSON): NUL bytes and a carriage return in a line.
    let input: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 13] + Array("{\n  \"h\": []".utf8)
    do {
      _ = try MetricsLog.parse(input, path: "m")
      Issue.record("parsed")
    } catch {
      #expect("\(error)" == #"m: unreadable line '\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\r{'"#, "\(error)")
    }
  }

  @Test("hparams.json whose hparams is not an object")
  func hparams() throws {
    #expect(
      try RunStore.storedHParams(Array(#"{"hparams":{"b":1,"a":[2]}}"#.utf8), path: "h")
        == #"{"a":[2],"b":1}"#)
    for bad in [#"{"hparams":5}"#, #"{"hparams":"x"}"#, #"{"hparams":null}"#, #"{"hparams":[1]}"#, "[]", ""] {
      #expect(throws: RunError.self, "\(bad)") { try RunStore.storedHParams(Array(bad.utf8), path: "h") }
    }
  }

  @Test("summary.json and sparsity.json that do not decode")
  func summaryAndSparsity() {
    #expect(throws: RunError.self) { try TrainSummary.decode(Array(#"{"run_dir":1}"#.utf8), path: "s") }
    #expect(throws: RunError.self) { try TrainSummary.decode([0xff, 0xfe], path: "s") }
    #expect(Results.sparsityDensity(Array(#"{"density":0.25}"#.utf8)) == 0.25)
    #expect(Results.sparsityDensity(Array(#"{"density":2}"#.utf8)) == nil)
    #expect(Results.sparsityDensity(Array(#"{"density":"x"}"#.utf8)) == nil)
    #expect(Results.sparsityDensity(Array("[".utf8)) == nil)
  }
}
