// Layer-name patterns with `*` wildcards (`--prune-ignore`): `wildcardMatch`, checked
// against a dynamic-programming matcher over characters. The input is `pattern\nname`.
import FuzzSupport
import Pruning

/// Reference: `*` matches any run of characters, everything else itself.
func reference(_ pattern: [Character], _ name: [Character]) -> Bool {
  // m[j]: pattern[..<i] matches name[..<j].
  var m = [Bool](repeating: false, count: name.count + 1)
  m[0] = true
  for p in pattern {
    var next = [Bool](repeating: false, count: name.count + 1)
    for j in 0...name.count {
      if p == "*" {
        next[j] = m[j] || (j > 0 && next[j - 1])
      } else if j > 0 {
        next[j] = m[j - 1] && name[j - 1] == p
      }
    }
    m = next
  }
  return m[name.count]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
  let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
  let pattern = String(parts[0])
  let name = parts.count > 1 ? String(parts[1]) : ""
  let got = wildcardMatch(pattern, name)
  let want = reference(Array(pattern), Array(name))
  require(got == want, "wildcardMatch(\(pattern.debugDescription), \(name.debugDescription)) is \(got)")
  return 0
}

runFuzzer { fuzz($0, $1) }
