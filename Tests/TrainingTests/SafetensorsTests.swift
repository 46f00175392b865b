import Foundation
import Testing
import Training

/// A safetensors file with `header` (JSON text, as written) and `data` after it; `length`
/// overrides the 8-byte header length.
func safetensorsFile(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
  let json = [UInt8](header.utf8)
  return withUnsafeBytes(of: (length ?? UInt64(json.count)).littleEndian) { [UInt8]($0) } + json + data
}

/// `Safetensors.parse` fails with one line that contains `substring`.
func expectInvalid(_ bytes: [UInt8], _ substring: String, sourceLocation: SourceLocation = #_sourceLocation) {
  do {
    _ = try Safetensors.parse(bytes, path: "x.safetensors")
    Issue.record("parsed, expected an error containing '\(substring)'", sourceLocation: sourceLocation)
  } catch {
    let text = "\(error)"
    #expect(text.hasPrefix("x.safetensors: not a valid safetensors file"), sourceLocation: sourceLocation)
    #expect(text.contains(substring), "error was: \(text)", sourceLocation: sourceLocation)
    #expect(
      !text.contains("\n") && !text.contains("\r"), "error was: \(text)", sourceLocation: sourceLocation)
  }
}

@Suite("safetensors parser: every header field checked before use")
struct SafetensorsParserTests {
  let eight = [UInt8](0..<8)

  @Test("a valid file parses, empty tensors and shared zero-length offsets included")
  func valid() throws {
    let f = safetensorsFile(
      #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F64","shape":[0,3],"data_offsets":[8,8]},"__metadata__":{"k":"v"}}"#,
      data: eight)
    let (t, meta) = try Safetensors.parse(f, path: "x")
    #expect(t["a"]?.bytes == eight && t["a"]?.shape == [2] && t["e"]?.bytes == [] && meta == ["k": "v"])
    let again = try Safetensors.parse(
      Safetensors.encode([("a", t["a"]!), ("e", t["e"]!)], metadata: meta), path: "y")
    #expect(again.tensors["a"]?.bytes == eight && again.metadata == meta)
  }

  @Test("absurd or truncated header lengths")
  func headerLength() {
    expectInvalid([1, 2, 3], "shorter than the 8-byte header length")
    expectInvalid(safetensorsFile("{}", length: 1 << 40), "over the limit of 100000000 bytes")
    expectInvalid(safetensorsFile("{}", length: UInt64.max), "over the limit")
    expectInvalid(safetensorsFile("{}", length: 100_000_000), "runs past the end")
    expectInvalid(safetensorsFile(#"{"a":1}"#, length: 3), "header is not a JSON object")
    expectInvalid(safetensorsFile("[1,2]"), "header is not a JSON object")
  }

  @Test("data offsets outside the data section, reversed or negative")
  func offsets() {
    let entry = { (o: String) in #"{"a":{"dtype":"F32","shape":[2],"data_offsets":\#(o)}}"# }
    expectInvalid(safetensorsFile(entry("[0,16]"), data: eight), "past the end of the 8-byte data section")
    expectInvalid(safetensorsFile(entry("[8,16]"), data: eight), "past the end")
    expectInvalid(
      safetensorsFile(entry("[9223372036854775800,9223372036854775807]"), data: eight), "past the end")
    expectInvalid(safetensorsFile(entry("[8,0]"), data: eight), "not 0 <= begin <= end")
    expectInvalid(safetensorsFile(entry("[-8,0]"), data: eight), "not 0 <= begin <= end")
    expectInvalid(safetensorsFile(entry("[0]"), data: eight), "no data_offsets")
    expectInvalid(safetensorsFile(entry("[0,1e30]"), data: eight), "no data_offsets")
  }

  @Test("overlapping tensors")
  func overlap() {
    expectInvalid(
      safetensorsFile(
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: eight),
      #"tensors "a" [0, 8] and "b" [4, 8] overlap"#)
    expectInvalid(
      safetensorsFile(
        #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        data: eight),
      "overlap")
  }

  @Test("unknown dtypes, and shapes that disagree with the byte count or overflow")
  func dtypeAndShape() {
    let entry = { (dtype: String, shape: String, o: String) in
      #"{"a":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(o)}}"#
    }
    expectInvalid(
      safetensorsFile(entry("BF16", "[4]", "[0,8]"), data: eight),
      #"dtype "BF16"; LotteryKit reads F32, F64 and I64"#)
    expectInvalid(safetensorsFile(#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: eight), "has no dtype")
    expectInvalid(
      safetensorsFile(entry("F32", "[3]", "[0,8]"), data: eight),
      "has 8 bytes, its dtype F32 and shape [3] need 12")
    expectInvalid(safetensorsFile(entry("F64", "[2]", "[0,8]"), data: eight), "need 16")
    expectInvalid(safetensorsFile(entry("F32", "[-2,-1]", "[0,8]"), data: eight), "negative size")
    expectInvalid(
      safetensorsFile(entry("F32", "[4611686018427387904,4]", "[0,8]"), data: eight), "too large")
    expectInvalid(
      safetensorsFile(entry("I64", "[4294967296,4294967296]", "[0,0]"), data: eight), "too large")
    expectInvalid(safetensorsFile(entry("F32", "\"2\"", "[0,8]"), data: eight), "has no shape")
    expectInvalid(safetensorsFile(#"{"a":[1,2]}"#, data: eight), #"entry "a" is not an object"#)
    expectInvalid(safetensorsFile(#"{"__metadata__":{"k":1}}"#), "__metadata__ is not a map of strings")
  }

  @Test("names with control characters stay on one line in errors")
  func names() {
    expectInvalid(safetensorsFile(#"{"a\nb":{"dtype":"X","shape":[],"data_offsets":[0,0]}}"#), #""a\nb""#)
  }
}
