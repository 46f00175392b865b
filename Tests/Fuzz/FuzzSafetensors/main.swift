// safetensors (checkpoints, model states and masks): `Safetensors.parse`. What parses must
// be self-consistent and survive a round trip through `encode`.
import FuzzSupport
import Training

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = fuzzBytes(data, size)
  guard let (tensors, metadata) = oneLineErrors({ try Safetensors.parse(input, path: "input") }) else {
    return 0
  }
  for (name, e) in tensors {
    let count = e.shape.reduce(1, *)
    let width = e.dtype == .F32 ? 4 : 8
    require(e.bytes.count == count * width, "tensor \(name): \(e.bytes.count) bytes for shape \(e.shape)")
    require(e.values(Float.self).count == count, "tensor \(name): value count")
  }
  let ordered = tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
  guard
    let again = oneLineErrors({
      try Safetensors.parse(Safetensors.encode(ordered, metadata: metadata), path: "re-encoded")
    })
  else {
    fatalError("a parsed file does not re-encode and parse")
  }
  require(again.metadata == metadata && again.tensors.count == tensors.count, "round trip")
  for (name, e) in tensors {
    let b = again.tensors[name]
    require(b?.bytes == e.bytes && b?.shape == e.shape && b?.dtype == e.dtype, "round trip of \(name)")
  }
  return 0
}

runFuzzer { fuzz($0, $1) }
