import Engine
import Experiments
import Foundation
import TestSupport
import Testing
import Training

@Suite("Sparse kernels from the command line, and sparse exports", .tags(.endToEnd), .endToEnd)
struct SparseExportTests {
  @Test("a lottery on sparse kernels records them; the export round-trips; bad input is one line")
  func export() throws {
    let out = CLI.tempDir()
    defer { try? FileManager.default.removeItem(atPath: out) }
    let a = lotteryBase + ["--output", out, "--levels", "2", "--sparse-kernels", "on"]
    let r = try CLI.run(["lottery"] + a)
    #expect(r.status == 0, "\(r.stderr)")
    let root = try lotteryRoot(out)
    let level = root + "/replicate_1/level_2"
    let summary =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: level + "/main/summary.json")))
      as! [String: Any]
    let kernels = summary["sparse_kernels"] as? [String: String] ?? [:]
    #expect(kernels.count == 3 && kernels.values.allSatisfy { $0 == "sparse-csr" }, "\(kernels)")
    #expect(FileManager.default.fileExists(atPath: level + "/main/sparse_kernels.json"))
    // `on` is another run than `auto`: a different folder.
    #expect(try CLI.run(["lottery"] + lotteryBase + ["--output", out, "--levels", "0"]).status == 0)
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("lottery_") }.count == 2)

    let ticket = out + "/ticket.safetensors"
    let e = try CLI.run(["export", level, "--output", ticket])
    #expect(e.status == 0, "\(e.stderr)")
    let (t, meta) = try Safetensors.read(ticket)
    #expect(meta["format"] == SparseExport.format && meta["model"] == "mnist_lenet_64_32")
    #expect(t["fc_layers.0.weight.crow_indices"]?.shape == [65] && t["fc_layers.0.weight"] == nil)
    #expect(t["init.fc_layers.0.weight"] != nil && t["rewind.fc.bias"] != nil && t["fc.bias"] != nil)
    // Logits of the export (sparse kernels) = logits of the final weights with the mask
    // (sparse kernels), bit for bit; the dense forward agrees to rounding.
    func logits(_ args: [String]) throws -> [Float] {
      let f = out + "/logits-\(UUID().uuidString).safetensors"
      let r = try CLI.run(["logits"] + args + ["--output", f])
      #expect(r.status == 0, "\(r.stderr)")
      return try Safetensors.read(f).tensors["logits"]!.values()
    }
    let fromExport = try logits([ticket])
    let final = level + "/main/model_final.safetensors"
    let withMask = try logits([
      final, "--model", "mnist_lenet_64_32", "--mask", level + "/main/mask.safetensors",
    ])
    let dense = try logits([final, "--model", "mnist_lenet_64_32"])
    #expect(fromExport == withMask)
    #expect(zip(fromExport, dense).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) })

    // A corrupted export: a column index out of range, then a truncated file.
    var entries = t
    var col: [Int64] = entries["fc_layers.0.weight.col_indices"]!.bytes.withUnsafeBytes {
      Array($0.bindMemory(to: Int64.self))
    }
    col[0] = 100_000
    entries["fc_layers.0.weight.col_indices"] = Safetensors.Entry(
      dtype: .I64, shape: [col.count], bytes: col.withUnsafeBytes { [UInt8]($0) })
    let bad = out + "/bad.safetensors"
    try Safetensors.write(
      entries.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: meta, to: bad)
    expectOneLineError(try CLI.run(["logits", bad, "--output", out + "/x.safetensors"]), "corrupt")
    let bytes = try Data(contentsOf: URL(fileURLWithPath: ticket))
    try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: bad))
    expectOneLineError(try CLI.run(["logits", bad, "--output", out + "/x.safetensors"]), "bad.safetensors")
    // A mask whose shape does not match its weight; an unknown policy; a folder that is
    // not a level; an unknown format.
    var maskEntries = try Safetensors.read(level + "/main/mask.safetensors").tensors
    maskEntries["fc_layers.0.weight"] = Safetensors.Entry(Tensor<Float>(repeating: 1, shape: [2, 2]))
    let badMask = out + "/badmask.safetensors"
    try Safetensors.write(maskEntries.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, to: badMask)
    expectOneLineError(
      try CLI.run([
        "logits", final, "--model", "mnist_lenet_64_32", "--mask", badMask, "--output",
        out + "/x.safetensors",
      ]), "wrong shape")
    expectOneLineError(
      try CLI.run(
        ["lottery"] + lotteryBase + ["--output", out, "--levels", "1", "--sparse-kernels", "maybe"]),
      "--sparse-kernels")
    expectOneLineError(try CLI.run(["export", root]), "no model_final.safetensors")
    expectOneLineError(try CLI.run(["export", level, "--format", "dense"]), "--format")
  }
}
