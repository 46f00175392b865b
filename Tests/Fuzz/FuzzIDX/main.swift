// IDX (MNIST family), plain or gzipped: `gunzipIfNeeded`, `IDX.parse` and `IDX.dataset`.
// The input is a label file and an image file: bytes 0-1 (big-endian) give the label
// part's length, the label part follows, the rest is the image part. Each part and the
// whole input are also parsed on their own.
import Datasets
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = fuzzBytes(data, size)
  if let plain = oneLineErrors({ try gunzipIfNeeded(input, path: "input") }) {
    for dims in [1, 3] {
      if let (d, v) = oneLineErrors({ try IDX.parse(plain, dimensions: dims, path: "input") }) {
        require(d.count == dims && d.reduce(1, *) == v.count, "IDX sizes \(d) for \(v.count) bytes")
      }
    }
  }
  guard input.count >= 2 else { return 0 }
  let n = min(Int(input[0]) << 8 | Int(input[1]), input.count - 2)
  let labels = Array(input[2..<(2 + n)])
  let images = Array(input[(2 + n)...])
  for size in [nil, (28, 28)] as [(Int, Int)?] {
    oneLineErrors {
      let ds = try IDX.dataset(
        imageBytes: gunzipIfNeeded(images, path: "images"),
        labelBytes: gunzipIfNeeded(labels, path: "labels"),
        images: "images", labels: "labels", name: "fuzz", mean: 0.5, std: 0.25, expectedSize: size)
      guard case .bytes(let pixels) = ds.storage else { fatalError("IDX gives bytes") }
      require(ds.count > 0 && pixels.count == ds.count * ds.exampleSize, "data set sizes")
      require(ds.labels.allSatisfy { $0 >= 0 && $0 < 10 }, "labels in 0..<10")
    }
  }
  return 0
}

runFuzzer { fuzz($0, $1) }
