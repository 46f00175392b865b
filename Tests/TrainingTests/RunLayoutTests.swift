import Foundation
import Testing
import Training

@Suite("Run layout")
struct RunLayoutTests {
  /// The package's Sources folder, from this file's path.
  static var sources: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Sources")
  }

  @Test("no run-store file name appears as a literal outside RunLayout.swift")
  func oneHome() throws {
    let names = RunFile.allCases.map(\.rawValue).filter { $0 != RunFile.lock.rawValue }
    let files = FileManager.default.enumerator(atPath: Self.sources.path)!.compactMap { $0 as? String }
      .filter { $0.hasSuffix(".swift") && !$0.hasSuffix("RunLayout.swift") }
    #expect(files.count > 50)
    var found: [String] = []
    for f in files {
      let text = try String(contentsOfFile: Self.sources.appendingPathComponent(f).path, encoding: .utf8)
      for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        if line.trimmingCharacters(in: .whitespaces).hasPrefix("//") { continue }
        for n in names where line.contains(n) {
          // A whole file name, not the start of an identifier (`graph.jsonObject()`).
          let after = line.components(separatedBy: n).dropFirst().map { $0.first }
          if after.contains(where: { $0 == nil || !($0!.isLetter || $0!.isNumber || $0! == "_") }) {
            found.append("\(f):\(i + 1): \(n)")
          }
        }
      }
    }
    #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
  }

  @Test("paths")
  func paths() {
    #expect(RunFile.mask.path(in: "/r/level_1/main") == "/r/level_1/main/mask.safetensors")
    #expect(RunLayout.level("/o/lottery_ab", replicate: 2, level: 3) == "/o/lottery_ab/replicate_2/level_3")
    #expect(RunLayout.main("/x") == "/x/main")
    #expect(RunLayout.root(.pai, output: "/o", hash: "12") == "/o/pai_12")
    #expect(RunLayout.kind(ofFolder: "/o/lmc_12") == .lmc)
    #expect(RunLayout.kind(ofFolder: "/o/other") == nil)
  }
}
