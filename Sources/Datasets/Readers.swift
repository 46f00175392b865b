import CZlib
import Foundation

/// Reads a whole file, transparently decompressing gzip (see ``gunzipIfNeeded(_:path:limit:)``).
public func readMaybeGzip(_ path: String) throws -> [UInt8] {
  guard FileManager.default.fileExists(atPath: path) else {
    throw DataError("\(path): no such file")
  }
  guard let d = FileManager.default.contents(atPath: path) else { throw DataError("\(path): cannot open") }
  return try gunzipIfNeeded([UInt8](d), path: path)
}

/// `bytes` as they are, or decompressed when they start with the gzip magic `1f 8b`
/// (one or more gzip members, as `gzip` and zlib's `gzread` accept). Trailing zero bytes
/// after the last member are ignored, as Python's `gzip` does; anything else is an error.
/// Output beyond `limit` bytes (a corrupt or malicious file: the largest data set read,
/// CIFAR-100, is 185 MB) is an error rather than an allocation.
public func gunzipIfNeeded(_ bytes: [UInt8], path: String, limit: Int = 1 << 31) throws -> [UInt8] {
  guard bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b else { return bytes }
  let corrupt = DataError("\(path): corrupt or truncated gzip data")
  var stream = z_stream()
  guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
  else { throw DataError("\(path): cannot start gzip decompression (out of memory?)") }
  defer { inflateEnd(&stream) }
  var out = [UInt8]()
  var chunk = [UInt8](repeating: 0, count: 1 << 18)
  return try bytes.withUnsafeBufferPointer { input -> [UInt8] in
    let base = UnsafeMutablePointer(mutating: input.baseAddress!)
    var fed = 0  // bytes of `input` handed to zlib so far
    while true {
      if stream.avail_in == 0 && fed < input.count {
        let n = min(input.count - fed, 1 << 30)
        stream.next_in = base + fed
        stream.avail_in = UInt32(n)
        fed += n
      }
      let status = chunk.withUnsafeMutableBufferPointer { c -> Int32 in
        stream.next_out = c.baseAddress
        stream.avail_out = UInt32(c.count)
        return inflate(&stream, Z_NO_FLUSH)
      }
      out.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
      guard out.count <= limit else {
        throw DataError("\(path): gzip data decompresses to more than \(limit) bytes (corrupt file?)")
      }
      switch status {
      case Z_STREAM_END:
        let consumed = fed - Int(stream.avail_in)
        let rest = input[consumed...]
        if rest.count >= 2 && rest[consumed] == 0x1f && rest[consumed + 1] == 0x8b {
          // Another gzip member follows.
          guard inflateReset(&stream) == Z_OK else { throw corrupt }
          continue
        }
        guard rest.allSatisfy({ $0 == 0 }) else {
          throw DataError("\(path): unexpected bytes after the end of the gzip data (corrupt file)")
        }
        return out
      case Z_OK:
        continue
      case Z_BUF_ERROR where stream.avail_in == 0 && fed < input.count:
        continue  // needs the next piece of input
      case Z_BUF_ERROR:
        throw corrupt  // the input ends before the gzip stream does
      default:
        throw corrupt
      }
    }
  }
}

/// IDX files (MNIST family): magic `00 00 08 D` (unsigned bytes, `D` dimensions), then `D`
/// big-endian 32-bit sizes, then the data.
public enum IDX {
  /// Parses an IDX file of unsigned bytes with `dimensions` dimensions; returns sizes and data.
  public static func parse(_ bytes: [UInt8], dimensions: Int, path: String) throws -> ([Int], [UInt8]) {
    guard bytes.count >= 4 else { throw DataError("\(path): truncated IDX header") }
    guard bytes[0] == 0, bytes[1] == 0 else {
      throw DataError("\(path): wrong magic number (not an IDX file)")
    }
    guard bytes[2] == 0x08 else {
      throw DataError(
        "\(path): IDX element type 0x\(String(bytes[2], radix: 16)) is not unsigned byte (0x08)")
    }
    guard Int(bytes[3]) == dimensions else {
      throw DataError("\(path): expected \(dimensions) dimensions, the IDX header says \(bytes[3])")
    }
    let header = 4 + 4 * dimensions
    guard bytes.count >= header else { throw DataError("\(path): truncated IDX header") }
    var dims: [Int] = []
    for d in 0..<dimensions {
      let o = 4 + 4 * d
      dims.append(
        Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
    }
    // The sizes come from the file: multiply without overflow before comparing.
    var expected = 1
    for d in dims {
      let (p, overflow) = expected.multipliedReportingOverflow(by: d)
      guard !overflow, p <= bytes.count else {
        throw DataError(
          "\(path): \(bytes.count - header) data bytes, the header \(dims) needs more (truncated or corrupt)")
      }
      expected = p
    }
    guard bytes.count - header == expected else {
      throw DataError(
        "\(path): \(bytes.count - header) data bytes, the header \(dims) needs \(expected) (truncated or corrupt)"
      )
    }
    return (dims, Array(bytes[header...]))
  }

  /// Reads an image file and a label file into a data set (`[N, 1, rows, cols]`).
  public static func load(
    images: String, labels: String, name: String, classes: Int = 10, mean: Float, std: Float,
    expectedSize: (Int, Int)? = (28, 28)
  ) throws -> Dataset {
    try dataset(
      imageBytes: readMaybeGzip(images), labelBytes: readMaybeGzip(labels), images: images, labels: labels,
      name: name, classes: classes, mean: mean, std: std, expectedSize: expectedSize)
  }

  /// A data set from the (decompressed) contents of an image file and a label file; the
  /// paths only name the files in errors.
  public static func dataset(
    imageBytes: [UInt8], labelBytes: [UInt8], images: String, labels: String, name: String,
    classes: Int = 10, mean: Float, std: Float, expectedSize: (Int, Int)? = (28, 28)
  ) throws -> Dataset {
    let (idims, pixels) = try parse(imageBytes, dimensions: 3, path: images)
    let (ldims, lab) = try parse(labelBytes, dimensions: 1, path: labels)
    guard idims[0] > 0 else { throw DataError("\(images): holds no images") }
    guard idims[0] == ldims[0] else {
      throw DataError("\(labels): \(ldims[0]) labels but \(images) has \(idims[0]) images")
    }
    if let (h, w) = expectedSize, idims[1] != h || idims[2] != w {
      throw DataError("\(images): images are \(idims[1])x\(idims[2]), expected \(h)x\(w)")
    }
    if let bad = lab.first(where: { Int($0) >= classes }) {
      throw DataError("\(labels): label \(bad) outside 0..<\(classes)")
    }
    return Dataset(
      name: name, storage: .bytes(pixels), labels: lab.map { Int32($0) },
      shape: [1, idims[1], idims[2]], classes: classes, mean: [mean], std: [std])
  }
}

/// CIFAR binary format: records of label byte(s) followed by 3072 pixel bytes (1024 red,
/// 1024 green, 1024 blue, row-major 32x32). CIFAR-10 has one label byte; CIFAR-100 has a
/// coarse and a fine label byte (the fine label is used).
public enum CIFAR {
  public static func parse(_ bytes: [UInt8], labelBytes: Int, classes: Int, path: String) throws
    -> (pixels: [UInt8], labels: [Int32])
  {
    let record = labelBytes + 3072
    guard !bytes.isEmpty, bytes.count % record == 0 else {
      throw DataError(
        "\(path): \(bytes.count) bytes is not a whole number of \(record)-byte CIFAR records (truncated, or not CIFAR-\(classes))"
      )
    }
    let n = bytes.count / record
    var pixels = [UInt8]()
    pixels.reserveCapacity(n * 3072)
    var labels = [Int32]()
    labels.reserveCapacity(n)
    for i in 0..<n {
      let o = i * record
      let label = Int(bytes[o + labelBytes - 1])
      guard label < classes else {
        throw DataError("\(path): record \(i) has label \(label) outside 0..<\(classes)")
      }
      labels.append(Int32(label))
      pixels.append(contentsOf: bytes[(o + labelBytes)..<(o + record)])
    }
    return (pixels, labels)
  }

  /// Loads and concatenates `files` into one data set `[N, 3, 32, 32]`.
  public static func load(
    files: [String], labelBytes: Int, classes: Int, name: String, mean: [Float], std: [Float]
  ) throws -> Dataset {
    var pixels = [UInt8]()
    var labels = [Int32]()
    for f in files {
      let (p, l) = try parse(readMaybeGzip(f), labelBytes: labelBytes, classes: classes, path: f)
      pixels += p
      labels += l
    }
    return Dataset(
      name: name, storage: .bytes(pixels), labels: labels, shape: [3, 32, 32], classes: classes,
      mean: mean, std: std)
  }
}
