import CZlib
import Datasets
import Foundation
import Testing

/// gzip-compresses `bytes` in memory (zlib, one member).
func gzipped(_ bytes: [UInt8]) -> [UInt8] {
  var s = z_stream()
  deflateInit2_(
    &s, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)
  )
  defer { deflateEnd(&s) }
  var out = [UInt8](repeating: 0, count: Int(deflateBound(&s, UInt(bytes.count))) + 64)
  var input = bytes
  let n = input.withUnsafeMutableBufferPointer { i in
    out.withUnsafeMutableBufferPointer { o -> Int in
      s.next_in = i.baseAddress
      s.avail_in = UInt32(i.count)
      s.next_out = o.baseAddress
      s.avail_out = UInt32(o.count)
      precondition(deflate(&s, Z_FINISH) == Z_STREAM_END)
      return o.count - Int(s.avail_out)
    }
  }
  return Array(out[..<n])
}

/// `body` throws a `DataError` of one line containing `substring`.
func expectDataError(
  _ substring: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
  do {
    try body()
    Issue.record("expected an error containing '\(substring)'", sourceLocation: sourceLocation)
  } catch {
    #expect(error is DataError, sourceLocation: sourceLocation)
    #expect("\(error)".contains(substring), "error was: \(error)", sourceLocation: sourceLocation)
    #expect(!"\(error)".contains("\n"), sourceLocation: sourceLocation)
  }
}

@Suite("Reader edge cases (fuzzing regressions)")
struct ParserEdgeTests {
  @Test("gzip in memory: several members, trailing zeros, trailing garbage, truncation")
  func gzip() throws {
    let data = idx([3], [1, 2, 3])
    #expect(try gunzipIfNeeded(data, path: "p") == data)  // not gzip: as it is
    #expect(try gunzipIfNeeded(gzipped(data), path: "p") == data)
    #expect(try gunzipIfNeeded(gzipped(Array(data[..<5])) + gzipped(Array(data[5...])), path: "p") == data)
    #expect(try gunzipIfNeeded(gzipped(data) + [0, 0, 0], path: "p") == data)
    #expect(try gunzipIfNeeded(gzipped([]), path: "p") == [])
    expectDataError("p: unexpected bytes after the end of the gzip data") {
      _ = try gunzipIfNeeded(gzipped(data) + [7], path: "p")
    }
    let z = gzipped(data)
    for cut in [2, 10, z.count - 1] {
      expectDataError("p: corrupt or truncated gzip data") {
        _ = try gunzipIfNeeded(Array(z[..<cut]), path: "p")
      }
    }
    let zeros = gzipped([UInt8](repeating: 0, count: 1 << 20))
    #expect(zeros.count < 2000)
    expectDataError("p: gzip data decompresses to more than 100000 bytes") {
      _ = try gunzipIfNeeded(zeros, path: "p", limit: 100_000)
    }
    var flipped = z
    flipped[12] ^= 0xff
    expectDataError("corrupt or truncated gzip data") { _ = try gunzipIfNeeded(flipped, path: "p") }
  }

  @Test("IDX sizes whose product overflows, or that need more bytes than the file has")
  func idxSizes() {
    // 2^32-1 three times overflows Int; before the fix the product trapped.
    expectDataError("the header [4294967295, 4294967295, 4294967295] needs more") {
      _ = try IDX.parse([0, 0, 8, 3] + [UInt8](repeating: 0xff, count: 12), dimensions: 3, path: "p")
    }
    expectDataError("needs more") {
      _ = try IDX.parse(idx([65536, 65536, 2], []), dimensions: 3, path: "p")
    }
    expectDataError("0 data bytes, the header [2, 2, 2] needs 8") {
      _ = try IDX.parse(idx([2, 2, 2], []), dimensions: 3, path: "p")
    }
  }

  @Test("an IDX image file with no images")
  func noImages() {
    expectDataError("images: holds no images") {
      _ = try IDX.dataset(
        imageBytes: idx([0, 28, 28], []), labelBytes: idx([0], []), images: "images", labels: "labels",
        name: "x", mean: 0, std: 1)
    }
  }
}
