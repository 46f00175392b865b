import Engine
import Foundation

/// The safetensors format (https://github.com/huggingface/safetensors), as PyTorch, NumPy
/// and JAX users load it: an 8-byte little-endian header length `N`, `N` bytes of JSON
/// `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`
/// (padded with spaces to a multiple of 8), then the little-endian tensor bytes.
public enum Safetensors {
  public enum DType: String, Sendable { case F32, F64, I64 }

  /// One tensor's raw contents.
  public struct Entry: Sendable {
    public var dtype: DType
    public var shape: [Int]
    public var bytes: [UInt8]
    public init(dtype: DType, shape: [Int], bytes: [UInt8]) {
      self.dtype = dtype
      self.shape = shape
      self.bytes = bytes
    }
    public init<T: Scalar>(_ t: Tensor<T>) {
      dtype = T.self == Double.self ? .F64 : .F32
      shape = t.shape
      bytes = [UInt8](UnsafeRawBufferPointer(start: t.data, count: t.count * MemoryLayout<T>.size))
    }
    public init(int64 value: Int64) {
      dtype = .I64
      shape = []
      bytes = withUnsafeBytes(of: value.littleEndian) { [UInt8]($0) }
    }
    /// Values as `T` (converting between F32 and F64).
    public func values<T: Scalar>(_: T.Type = T.self) -> [T] {
      switch dtype {
      case .F32:
        return bytes.withUnsafeBytes { $0.bindMemory(to: Float.self).map { T($0) } }
      case .F64:
        return bytes.withUnsafeBytes { $0.bindMemory(to: Double.self).map { T($0) } }
      case .I64:
        return bytes.withUnsafeBytes { $0.bindMemory(to: Int64.self).map { T($0) } }
      }
    }
    /// Copies into `t`, which must have the same shape.
    public func copy<T: Scalar>(into t: Tensor<T>, name: String, file: String) throws {
      guard shape == t.shape else {
        throw RunError("\(file): tensor \(name) has shape \(shape), the model expects \(t.shape)")
      }
      let v: [T] = values()
      v.withUnsafeBufferPointer { t.data.update(from: $0.baseAddress!, count: v.count) }
    }
  }

  /// Serialises tensors (in the given order) and string metadata.
  public static func encode(_ tensors: [(String, Entry)], metadata: [String: String] = [:]) throws -> [UInt8]
  {
    var header: [String: Any] = [:]
    var offset = 0
    for (name, e) in tensors {
      header[name] = [
        "dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.bytes.count],
      ]
      offset += e.bytes.count
    }
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var json = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
    while json.count % 8 != 0 { json.append(0x20) }
    var out = [UInt8]()
    out.reserveCapacity(8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out += $0 }
    out += json
    for (_, e) in tensors { out += e.bytes }
    return out
  }

  /// Writes atomically (see ``AtomicFile``).
  public static func write(_ tensors: [(String, Entry)], metadata: [String: String] = [:], to path: String)
    throws
  {
    try AtomicFile.write(encode(tensors, metadata: metadata), to: path)
  }

  /// Parses a file; any inconsistency is a one-line error naming the file.
  public static func read(_ path: String) throws -> (tensors: [String: Entry], metadata: [String: String]) {
    try parse(AtomicFile.read(path), path: path)
  }

  /// The largest header accepted (the reference implementation's limit is 100 MB too).
  public static let maxHeaderBytes = 100_000_000

  /// Parses the contents of a safetensors file; `path` only names the file in errors.
  /// Checks, before anything is allocated from a header field: the header length (at most
  /// ``maxHeaderBytes`` and inside the file), every entry's dtype (F32, F64, I64), shape
  /// (non-negative sizes whose product times the dtype's width does not overflow and equals
  /// the entry's byte count) and data offsets (`begin <= end`, inside the data section), and
  /// that no two tensors share a byte.
  public static func parse(_ bytes: [UInt8], path: String) throws -> (
    tensors: [String: Entry], metadata: [String: String]
  ) {
    let bad = { (why: String) in RunError("\(path): not a valid safetensors file (\(why))") }
    guard bytes.count >= 8 else { throw bad("\(bytes.count) bytes, shorter than the 8-byte header length") }
    var n: UInt64 = 0
    for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    guard n <= UInt64(maxHeaderBytes) else {
      throw bad("header length \(n) is over the limit of \(maxHeaderBytes) bytes")
    }
    guard n <= UInt64(bytes.count - 8) else {
      throw bad("header length \(n) runs past the end of the \(bytes.count)-byte file (truncated?)")
    }
    let dataStart = 8 + Int(n)
    let dataSize = bytes.count - dataStart
    guard let header = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])) as? [String: Any]
    else { throw bad("header is not a JSON object") }
    var tensors: [String: Entry] = [:]
    var metadata: [String: String] = [:]
    var ranges: [(begin: Int, end: Int, name: String, dtype: DType, shape: [Int])] = []
    for (name, value) in header {
      let quoted = name.debugDescription  // names may hold any character, newlines included
      if name == "__metadata__" {
        guard let m = value as? [String: String] else { throw bad("__metadata__ is not a map of strings") }
        metadata = m
        continue
      }
      guard let d = value as? [String: Any] else { throw bad("entry \(quoted) is not an object") }
      guard let dtypeName = d["dtype"] as? String else { throw bad("tensor \(quoted) has no dtype") }
      guard let dt = DType(rawValue: dtypeName) else {
        throw bad(
          "tensor \(quoted) has dtype \(dtypeName.debugDescription); LotteryKit reads F32, F64 and I64")
      }
      guard let shape = d["shape"] as? [Int] else {
        throw bad("tensor \(quoted) has no shape (a list of integers)")
      }
      guard let off = d["data_offsets"] as? [Int], off.count == 2 else {
        throw bad("tensor \(quoted) has no data_offsets (two integers)")
      }
      var count = dt == .F32 ? 4 : 8  // bytes: the dtype's width times every size
      for s in shape {
        guard s >= 0 else { throw bad("tensor \(quoted) has shape \(shape) with a negative size") }
        let (p, overflow) = count.multipliedReportingOverflow(by: s)
        guard !overflow else { throw bad("tensor \(quoted) has shape \(shape), too large") }
        count = p
      }
      let (begin, end) = (off[0], off[1])
      guard begin >= 0, begin <= end else {
        throw bad("tensor \(quoted) has data_offsets [\(begin), \(end)], not 0 <= begin <= end")
      }
      guard end <= dataSize else {
        throw bad(
          "tensor \(quoted) has data_offsets [\(begin), \(end)] past the end of the \(dataSize)-byte data section (truncated?)"
        )
      }
      guard end - begin == count else {
        throw bad(
          "tensor \(quoted) has \(end - begin) bytes, its dtype \(dt.rawValue) and shape \(shape) need \(count)"
        )
      }
      ranges.append((begin, end, name, dt, shape))
    }
    // No byte may belong to two tensors (empty tensors own none).
    let nonEmpty = ranges.filter { $0.begin < $0.end }.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
    for (a, b) in zip(nonEmpty, nonEmpty.dropFirst()) where b.begin < a.end {
      throw bad(
        "tensors \(a.name.debugDescription) [\(a.begin), \(a.end)] and \(b.name.debugDescription) [\(b.begin), \(b.end)] overlap"
      )
    }
    for r in ranges {
      tensors[r.name] = Entry(
        dtype: r.dtype, shape: r.shape, bytes: Array(bytes[(dataStart + r.begin)..<(dataStart + r.end)]))
    }
    return (tensors, metadata)
  }
}
