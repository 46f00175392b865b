// Step strings (`2ep`, `500it`, `1ep500it`: `StepSpec(parsing:)`, then `iterations(perEpoch:)`
// as the runners use it) and level lists (`0-3,5`: `parseLevels`).
import Experiments
import FuzzSupport
import NN

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
  if let s = oneLineErrors({ try StepSpec(parsing: text) }) {
    require(s.epochs >= 0 && s.iterations >= 0, "negative step \(s)")
    require((try? StepSpec(parsing: s.description)) == s, "'\(s.description)' does not parse back")
    for perEpoch in [1, 469, 1_000_000] {
      oneLineErrors { _ = try s.iterations(perEpoch: perEpoch) }
    }
  }
  if let levels = oneLineErrors({ try parseLevels(text) }) {
    require(!levels.isEmpty && levels == Array(Set(levels)).sorted() && levels[0] >= 0, "levels \(levels)")
  }
  return 0
}

runFuzzer { fuzz($0, $1) }
