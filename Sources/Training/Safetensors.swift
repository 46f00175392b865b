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
    let bytes = try AtomicFile.read(path)
    let bad = { (why: String) in RunError("\(path): not a valid safetensors file (\(why))") }
    guard bytes.count >= 8 else { throw bad("truncated header") }
    var n: UInt64 = 0
    for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    guard n <= UInt64(bytes.count - 8) else { throw bad("truncated header") }
    let json = Data(bytes[8..<(8 + Int(n))])
    guard let header = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
      throw bad("header is not JSON")
    }
    let dataStart = 8 + Int(n)
    var tensors: [String: Entry] = [:]
    var metadata: [String: String] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        metadata = value as? [String: String] ?? [:]
        continue
      }
      guard let d = value as? [String: Any], let dt = (d["dtype"] as? String).flatMap(DType.init),
        let shape = d["shape"] as? [Int], let off = d["data_offsets"] as? [Int], off.count == 2
      else { throw bad("entry \(name) is malformed or has an unsupported dtype") }
      let size = dt == .F32 ? 4 : 8
      guard off[0] >= 0, off[1] >= off[0], dataStart + off[1] <= bytes.count,
        off[1] - off[0] == shape.reduce(1, *) * size
      else { throw bad("tensor \(name) is truncated or its size disagrees with its shape") }
      tensors[name] = Entry(
        dtype: dt, shape: shape, bytes: Array(bytes[(dataStart + off[0])..<(dataStart + off[1])]))
    }
    return (tensors, metadata)
  }
}
