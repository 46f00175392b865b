import Foundation

/// A JSON value as it stands in a file: the typed form of what a result echoes without
/// interpreting it (a run's stored `hparams` and `provenance`, its `commands.jsonl` lines,
/// its `machine_changes.json` entries), so that files written by older builds, with fields
/// this build does not know, still round-trip unchanged.
///
/// Whole numbers decode as ``int(_:)`` and others as ``double(_:)``, and encode back as
/// the same text (`JSONEncoder` and `JSONSerialization` print numbers alike).
public enum JSONValue: Codable, Equatable, Sendable {
  case null
  case bool(Bool)
  case int(Int)
  /// A whole number above `Int.max` (a 64-bit seed).
  case uint(UInt64)
  case double(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if c.decodeNil() {
      self = .null
    } else if let b = try? c.decode(Bool.self) {
      self = .bool(b)
    } else if let i = try? c.decode(Int.self) {
      self = .int(i)
    } else if let u = try? c.decode(UInt64.self) {
      self = .uint(u)
    } else if let d = try? c.decode(Double.self) {
      self = .double(d)
    } else if let s = try? c.decode(String.self) {
      self = .string(s)
    } else if let a = try? c.decode([JSONValue].self) {
      self = .array(a)
    } else {
      self = .object(try c.decode([String: JSONValue].self))
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .null: try c.encodeNil()
    case .bool(let b): try c.encode(b)
    case .int(let i): try c.encode(i)
    case .uint(let u): try c.encode(u)
    case .double(let d): try c.encode(d)
    case .string(let s): try c.encode(s)
    case .array(let a): try c.encode(a)
    case .object(let o): try c.encode(o)
    }
  }

  /// The JSON text of a file or line (nil: not JSON).
  public static func parse(_ bytes: [UInt8]) -> JSONValue? {
    try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
  }

  /// Any `Encodable` value as a JSON value (for a typed value stored beside echoed ones).
  public init<T: Encodable>(encoding value: T) throws {
    self = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
  }

  /// Decodes this value as `T`.
  public func decode<T: Decodable>(_: T.Type) throws -> T {
    try JSONDecoder().decode(T.self, from: JSONEncoder().encode(self))
  }

  public subscript(key: String) -> JSONValue? {
    if case .object(let o) = self { return o[key] }
    return nil
  }
  public var string: String? {
    if case .string(let s) = self { return s }
    return nil
  }
  /// A number as a `Double` (whole numbers too).
  public var double: Double? {
    switch self {
    case .double(let d): return d
    case .int(let i): return Double(i)
    case .uint(let u): return Double(u)
    default: return nil
    }
  }
  public var int: Int? {
    if case .int(let i) = self { return i }
    return nil
  }
  public var bool: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }
  public var array: [JSONValue]? {
    if case .array(let a) = self { return a }
    return nil
  }
  public var object: [String: JSONValue]? {
    if case .object(let o) = self { return o }
    return nil
  }
  /// Equality in which numbers compare by value (`1` and `1.0` are the same number).
  public func sameValue(_ other: JSONValue) -> Bool {
    switch (self, other) {
    case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.sameValue($1) }
    case (.object(let a), .object(let b)):
      return a.count == b.count && a.allSatisfy { k, v in b[k].map { v.sameValue($0) } ?? false }
    default:
      if case .uint(let u) = self, case .uint(let v) = other { return u == v }
      if let x = double, let y = other.double { return x == y }
      return self == other
    }
  }

  /// The text a person reads: strings bare, numbers as JSON writes them, null as `none`.
  public var text: String {
    switch self {
    case .null: return "none"
    case .bool(let b): return "\(b)"
    case .int(let i): return "\(i)"
    case .uint(let u): return "\(u)"
    case .double(let d): return "\(d)"
    case .string(let s): return s
    case .array, .object: return String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self)
    }
  }
}

/// One JSON object per line of text, sorted keys: how every command prints `--json`.
public func jsonLine<T: Encodable>(_ value: T) -> String {
  let e = JSONEncoder()
  e.outputFormatting = [.sortedKeys]
  return String(decoding: try! e.encode(value), as: UTF8.self)
}

/// An optional value that JSON always carries, as `null` when absent (a plain optional is
/// left out by `JSONEncoder`). Result types mark their statistics with it, so a statistic
/// no replicate has reads `null` instead of disappearing, without a hand-written
/// `encode(to:)` per type.
@propertyWrapper
public struct Nullable<Value: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
  public var wrappedValue: Value?
  public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    wrappedValue = c.decodeNil() ? nil : try c.decode(Value.self)
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
  }
}

extension KeyedDecodingContainer {
  /// A missing key decodes as nil, as for a plain optional.
  public func decode<T>(_: Nullable<T>.Type, forKey key: Key) throws -> Nullable<T> {
    try decodeIfPresent(Nullable<T>.self, forKey: key) ?? Nullable(wrappedValue: nil)
  }
}
