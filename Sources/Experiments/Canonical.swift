import Crypto
import Foundation

/// # Canonical JSON and run hashes
///
/// Run folders are named by a hash of their hyperparameters, so the hashed text must not
/// change with the toolchain, the platform or Foundation's JSON writer. ``CanonicalEncoder``
/// is LotteryKit's own `Encoder` and serializer (it never calls `JSONEncoder`):
///
/// - objects: keys sorted by their UTF-8 bytes, no whitespace; `nil` optionals are left out
///   (as `encodeIfPresent` does), so adding an optional field keeps old hashes;
/// - integers: decimal digits (`-` for negatives);
/// - floating-point numbers: RFC 8785 / ECMAScript `Number.prototype.toString`: the shortest
///   digit string that reads back to the same value (unique: it is a property of the value,
///   not of an algorithm), laid out by fixed rules: `1` (not `1.0`), `0.1`, `0.000001`,
///   `1e-7`, `1.5e+21`, `0` for `-0.0`; NaN and infinities are errors;
/// - strings: UTF-8 as is, except `"` `\` and control characters, escaped as `\"` `\\` `\b`
///   `\t` `\n` `\f` `\r` or `\u00xx` (lower-case hex).
///
/// The run hash is SHA-256 over that text (``RunHash``); folder names use its first 16 hex
/// digits (64 bits: `hparams.json` is compared on every hash hit, so a collision is an
/// error, never a silently reused run), and `hparams.json` records all 64.
public struct CanonicalEncoder {
  public init() {}

  public func encode<T: Encodable>(_ value: T) throws -> String {
    let root = CanonicalNode()
    try root.encode(value, codingPath: [])
    var out = ""
    try root.write(to: &out)
    return out
  }
}

public enum CanonicalEncodingError: Error, CustomStringConvertible {
  case notFinite([CodingKey])
  case empty([CodingKey])
  public var description: String {
    switch self {
    case .notFinite(let p):
      "cannot hash a non-finite number at \(p.map(\.stringValue).joined(separator: "."))"
    case .empty(let p): "nothing encoded at \(p.map(\.stringValue).joined(separator: "."))"
    }
  }
}

/// SHA-256 run hashes (see ``CanonicalEncoder``).
public enum RunHash {
  /// The scheme recorded next to the full hash in `hparams.json`.
  public static let scheme = "sha256-canonical-json-v1"
  /// Hex digits of the hash in folder names.
  public static let folderDigits = 16

  /// All 64 hex digits of SHA-256 over `text`'s UTF-8 bytes.
  public static func sha256(_ text: String) -> String { sha256(bytes: Array(text.utf8)) }

  /// All 64 hex digits of SHA-256 over `bytes` (the pinned-results test hashes files).
  public static func sha256(bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { byte in
      let h = String(byte, radix: 16)
      return h.count == 1 ? "0" + h : h
    }.joined()
  }

  /// The first ``folderDigits`` hex digits of ``sha256(_:)``.
  public static func short(_ text: String) -> String { String(sha256(text).prefix(folderDigits)) }

  /// The hash of builds before the SHA-256 scheme: FNV-1a-64 over `JSONEncoder` text. Only used to find
  /// run folders made under it (see ``RunStore/migrate(from:to:hparamsJSON:)``).
  public static func legacyFNV(_ s: String) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 {
      h ^= UInt64(b)
      h = h &* 0x0000_0100_0000_01b3
    }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
  }
}

/// Formats a finite binary floating-point value by RFC 8785's rules, from the shortest
/// round-trip digits (taken from Swift's `description`, which prints exactly those digits;
/// only the digits and the decimal exponent are used, never its layout).
func canonicalNumber<F: BinaryFloatingPoint & CustomStringConvertible>(_ x: F) -> String? {
  guard x.isFinite else { return nil }
  if x == 0 { return "0" }
  var text = x.description
  var negative = false
  if text.hasPrefix("-") {
    negative = true
    text.removeFirst()
  }
  // Split "d.ddde±x" into digits and a decimal exponent.
  var exponent = 0
  if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
    guard let v = Int(text[text.index(after: e)...].replacingOccurrences(of: "+", with: "")) else {
      return nil
    }
    exponent = v
    text = String(text[..<e])
  }
  var intPart = text
  var fracPart = ""
  if let dot = text.firstIndex(of: ".") {
    intPart = String(text[..<dot])
    fracPart = String(text[text.index(after: dot)...])
  }
  // value = 0.<digits> ... as digits × 10^(n - k): n = position of the decimal point.
  var digits = intPart + fracPart
  var n = intPart.count + exponent
  while digits.hasPrefix("0") {
    digits.removeFirst()
    n -= 1
  }
  while digits.hasSuffix("0") { digits.removeLast() }
  guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
  let k = digits.count
  var out: String
  if k <= n && n <= 21 {
    out = digits + String(repeating: "0", count: n - k)
  } else if 0 < n && n <= 21 {
    out = String(digits.prefix(n)) + "." + String(digits.dropFirst(n))
  } else if -6 < n && n <= 0 {
    out = "0." + String(repeating: "0", count: -n) + digits
  } else {
    let e = n - 1
    out = String(digits.prefix(1)) + (k > 1 ? "." + String(digits.dropFirst()) : "")
    out += "e" + (e < 0 ? "-" : "+") + String(abs(e))
  }
  return (negative ? "-" : "") + out
}

/// A JSON string literal by the rules above.
func canonicalString(_ s: String) -> String {
  var out = "\""
  for u in s.unicodeScalars {
    switch u {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\u{08}": out += "\\b"
    case "\t": out += "\\t"
    case "\n": out += "\\n"
    case "\u{0C}": out += "\\f"
    case "\r": out += "\\r"
    case _ where u.value < 0x20:
      let h = String(u.value, radix: 16)
      out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
    default: out.unicodeScalars.append(u)
    }
  }
  return out + "\""
}

/// One value of the tree an `Encodable` writes (a class, so containers can fill children).
final class CanonicalNode {
  enum Content {
    case none
    case literal(String)  // number, bool, null or an already escaped string
    case array([CanonicalNode])
    case object([String: CanonicalNode])
  }
  var content = Content.none

  func encode<T: Encodable>(_ value: T, codingPath: [CodingKey]) throws {
    try value.encode(to: CanonicalEncoderImpl(node: self, codingPath: codingPath))
  }

  func write(to out: inout String) throws {
    switch content {
    case .none: throw CanonicalEncodingError.empty([])
    case .literal(let s): out += s
    case .array(let items):
      out += "["
      for (i, item) in items.enumerated() {
        if i > 0 { out += "," }
        try item.write(to: &out)
      }
      out += "]"
    case .object(let members):
      out += "{"
      let keys = members.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
      for (i, key) in keys.enumerated() {
        if i > 0 { out += "," }
        out += canonicalString(key) + ":"
        try members[key]!.write(to: &out)
      }
      out += "}"
    }
  }

  func child(forKey key: String) -> CanonicalNode {
    let c = CanonicalNode()
    var members: [String: CanonicalNode] = [:]
    if case .object(let m) = content { members = m }
    members[key] = c
    content = .object(members)
    return c
  }

  func appendChild() -> CanonicalNode {
    let c = CanonicalNode()
    var items: [CanonicalNode] = []
    if case .array(let a) = content { items = a }
    items.append(c)
    content = .array(items)
    return c
  }
}

struct CanonicalKey: CodingKey {
  var stringValue: String
  var intValue: Int?
  init(stringValue: String) { self.stringValue = stringValue }
  init(intValue: Int) {
    stringValue = String(intValue)
    self.intValue = intValue
  }
}

struct CanonicalEncoderImpl: Encoder {
  let node: CanonicalNode
  let codingPath: [CodingKey]
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
    if case .object = node.content {} else { node.content = .object([:]) }
    return KeyedEncodingContainer(Keyed<Key>(node: node, codingPath: codingPath))
  }
  func unkeyedContainer() -> UnkeyedEncodingContainer {
    if case .array = node.content {} else { node.content = .array([]) }
    return Unkeyed(node: node, codingPath: codingPath)
  }
  func singleValueContainer() -> SingleValueEncodingContainer {
    Single(node: node, codingPath: codingPath)
  }

  /// Scalars go through here whichever container they come from.
  static func encodeValue<T: Encodable>(_ value: T, into node: CanonicalNode, codingPath: [CodingKey]) throws
  {
    switch value {
    case let v as Double:
      guard let s = canonicalNumber(v) else { throw CanonicalEncodingError.notFinite(codingPath) }
      node.content = .literal(s)
    case let v as Float:
      guard let s = canonicalNumber(v) else { throw CanonicalEncodingError.notFinite(codingPath) }
      node.content = .literal(s)
    case let v as String: node.content = .literal(canonicalString(v))
    case let v as Bool: node.content = .literal(v ? "true" : "false")
    case let v as any BinaryInteger: node.content = .literal(String(describing: v))
    default: try node.encode(value, codingPath: codingPath)
    }
  }

  struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: CanonicalNode
    let codingPath: [CodingKey]
    mutating func encodeNil(forKey key: Key) throws {
      node.child(forKey: key.stringValue).content = .literal("null")
    }
    // This generic method also witnesses the protocol's per-type `encode` requirements
    // (Bool, String, Double, the integers...): every scalar goes through `encodeValue`.
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
      try CanonicalEncoderImpl.encodeValue(
        value, into: node.child(forKey: key.stringValue), codingPath: codingPath + [key])
    }
    mutating func nestedContainer<NestedKey: CodingKey>(
      keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
      CanonicalEncoderImpl(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key])
        .container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
      CanonicalEncoderImpl(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key])
        .unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder {
      CanonicalEncoderImpl(node: node.child(forKey: "super"), codingPath: codingPath)
    }
    mutating func superEncoder(forKey key: Key) -> Encoder {
      CanonicalEncoderImpl(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key])
    }
  }

  struct Unkeyed: UnkeyedEncodingContainer {
    let node: CanonicalNode
    let codingPath: [CodingKey]
    var count: Int {
      if case .array(let a) = node.content { return a.count }
      return 0
    }
    var key: CodingKey { CanonicalKey(intValue: count) }
    mutating func encodeNil() throws { node.appendChild().content = .literal("null") }
    mutating func encode<T: Encodable>(_ value: T) throws {  // witnesses the per-type ones too
      let k = key
      try CanonicalEncoderImpl.encodeValue(value, into: node.appendChild(), codingPath: codingPath + [k])
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
      -> KeyedEncodingContainer<NestedKey>
    {
      let k = key
      return CanonicalEncoderImpl(node: node.appendChild(), codingPath: codingPath + [k])
        .container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
      let k = key
      return CanonicalEncoderImpl(node: node.appendChild(), codingPath: codingPath + [k]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder {
      CanonicalEncoderImpl(node: node.appendChild(), codingPath: codingPath)
    }
  }

  struct Single: SingleValueEncodingContainer {
    let node: CanonicalNode
    let codingPath: [CodingKey]
    mutating func encodeNil() throws { node.content = .literal("null") }
    mutating func encode<T: Encodable>(_ value: T) throws {  // witnesses the per-type ones too
      try CanonicalEncoderImpl.encodeValue(value, into: node, codingPath: codingPath)
    }
  }
}
