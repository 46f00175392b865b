import CZlib
import Foundation

/// Reads a whole file, transparently decompressing gzip (zlib's `gzread` also reads plain
/// files as they are).
public func readMaybeGzip(_ path: String) throws -> [UInt8] {
  guard FileManager.default.fileExists(atPath: path) else {
    throw DataError("\(path): no such file")
  }
  guard let f = gzopen(path, "rb") else { throw DataError("\(path): cannot open") }
  defer { gzclose(f) }
  var out = [UInt8]()
  var chunk = [UInt8](repeating: 0, count: 1 << 20)
  while true {
    let n = chunk.withUnsafeMutableBytes { gzread(f, $0.baseAddress, UInt32($0.count)) }
    if n < 0 { throw DataError("\(path): corrupt or truncated gzip data") }
    if n == 0 { break }
    out.append(contentsOf: chunk[0..<Int(n)])
  }
  // A truncated gzip stream ends without error from gzread; gzclose_r/gzerror report it.
  var errnum: Int32 = 0
  _ = gzerror(f, &errnum)
  if errnum != Z_OK && errnum != Z_STREAM_END {
    throw DataError("\(path): corrupt or truncated gzip data")
  }
  return out
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
    let expected = dims.reduce(1, *)
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
    let (idims, pixels) = try parse(readMaybeGzip(images), dimensions: 3, path: images)
    let (ldims, lab) = try parse(readMaybeGzip(labels), dimensions: 1, path: labels)
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
