// CIFAR binary batches, plain or gzipped: `gunzipIfNeeded` and `CIFAR.parse`. Byte 0's low
// bit picks CIFAR-10 (one label byte) or CIFAR-100 (coarse and fine label bytes); the rest
// is the file.
import Datasets
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = fuzzBytes(data, size)
  guard let first = input.first else { return 0 }
  let (labelBytes, classes) = first & 1 == 0 ? (1, 10) : (2, 100)
  let file = Array(input.dropFirst())
  guard let plain = oneLineErrors({ try gunzipIfNeeded(file, path: "input") }) else { return 0 }
  if let (pixels, labels) = oneLineErrors({
    try CIFAR.parse(plain, labelBytes: labelBytes, classes: classes, path: "input")
  }) {
    require(!labels.isEmpty && pixels.count == labels.count * 3072, "CIFAR sizes")
    require(labels.allSatisfy { $0 >= 0 && Int($0) < classes }, "labels in range")
  }
  return 0
}

runFuzzer { fuzz($0, $1) }
