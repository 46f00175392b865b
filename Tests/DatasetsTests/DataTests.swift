import CZlib
import Datasets
import Engine
import Foundation
import TestSupport
import Testing

/// A fresh temporary folder for one test (removed with the test process's folder).
func tempDir() -> String { CLI.tempDir() }

func write(_ bytes: [UInt8], to path: String, gzip: Bool = false) {
  if gzip {
    let f = gzopen(path, "wb")!
    bytes.withUnsafeBytes { _ = gzwrite(f, $0.baseAddress, UInt32($0.count)) }
    gzclose(f)
  } else {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
  }
}

func idx(_ dims: [Int], _ data: [UInt8], type: UInt8 = 8) -> [UInt8] {
  var out: [UInt8] = [0, 0, type, UInt8(dims.count)]
  for d in dims { out += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
  return out + data
}

/// Writes a tiny MNIST-layout data set: `n` training and `m` test images of 28x28.
func writeMNIST(_ dir: String, n: Int = 7, m: Int = 3, gzip: Bool) {
  let ext = gzip ? ".gz" : ""
  for (prefix, count) in [("train", n), ("t10k", m)] {
    let pixels = (0..<(count * 784)).map { UInt8($0 % 251) }
    let labels = (0..<count).map { UInt8($0 % 10) }
    write(idx([count, 28, 28], pixels), to: "\(dir)/\(prefix)-images-idx3-ubyte\(ext)", gzip: gzip)
    write(idx([count], labels), to: "\(dir)/\(prefix)-labels-idx1-ubyte\(ext)", gzip: gzip)
  }
}

func expectError(_ substring: String, _ body: () throws -> Void) {
  do {
    try body()
    Issue.record("expected an error containing '\(substring)'")
  } catch {
    #expect("\(error)".contains(substring), "error was: \(error)")
    #expect(!"\(error)".contains("\n"))
  }
}

@Suite("Readers")
struct ReaderTests {
  @Test("IDX plain and gzipped", arguments: [false, true])
  func idxFiles(gzip: Bool) throws {
    let d = tempDir()
    writeMNIST(d, gzip: gzip)
    let (train, test) = try DatasetCatalog.load("mnist", dataDir: d)
    #expect(train.count == 7 && test.count == 3)
    #expect(train.shape == [1, 28, 28])
    #expect(train.labels == [0, 1, 2, 3, 4, 5, 6])
    let x = Tensor<Float>(zeros: [0])
    _ = train.gather([1], into: x)
    // pixel 784 % 251 = 31 of example 1, normalised with MNIST's mean and std.
    #expect(abs(x[0] - (31.0 / 255 - 0.1307) / 0.3081) < 1e-5)
  }

  @Test("CIFAR-10 over several batches and CIFAR-100 fine labels")
  func cifar() throws {
    let d = tempDir()
    func records(_ n: Int, labelBytes: Int, label: (Int) -> [UInt8]) -> [UInt8] {
      var out: [UInt8] = []
      for i in 0..<n { out += label(i) + (0..<3072).map { UInt8(($0 + i) % 256) } }
      return out
    }
    for b in 1...5 {
      write(records(2, labelBytes: 1) { [UInt8(($0 + b) % 10)] }, to: "\(d)/data_batch_\(b).bin")
    }
    write(records(3, labelBytes: 1) { [UInt8($0)] }, to: "\(d)/test_batch.bin")
    let (train, test) = try DatasetCatalog.load("cifar10", dataDir: d)
    #expect(train.count == 10 && test.count == 3 && train.shape == [3, 32, 32])
    #expect(train.labels.prefix(4) == [1, 2, 2, 3])
    let d100 = tempDir() + "/cifar-100-binary"
    try FileManager.default.createDirectory(atPath: d100, withIntermediateDirectories: true)
    write(records(4, labelBytes: 2) { [UInt8($0), UInt8(50 + $0)] }, to: "\(d100)/train.bin")
    write(records(2, labelBytes: 2) { [0, UInt8(99 - $0)] }, to: "\(d100)/test.bin", gzip: true)
    let (t100, e100) = try DatasetCatalog.load(
      "cifar100", dataDir: (d100 as NSString).deletingLastPathComponent)
    #expect(t100.labels == [50, 51, 52, 53] && e100.labels == [99, 98] && t100.classes == 100)
  }

  @Test("corrupt files give one clear line each")
  func badFiles() throws {
    let d = tempDir()
    writeMNIST(d, gzip: false)
    let images = "\(d)/train-images-idx3-ubyte"
    // Truncated data.
    write(Array(idx([7, 28, 28], [UInt8](repeating: 0, count: 7 * 784)).dropLast(10)), to: images)
    expectError("truncated or corrupt") { _ = try DatasetCatalog.load("mnist", dataDir: d) }
    // Wrong magic.
    write([1, 2, 8, 3] + Array(repeating: 0, count: 12 + 7 * 784), to: images)
    expectError("wrong magic number") { _ = try DatasetCatalog.load("mnist", dataDir: d) }
    // Wrong element type.
    write(idx([7, 28, 28], [UInt8](repeating: 0, count: 7 * 784), type: 0x0D), to: images)
    expectError("is not unsigned byte") { _ = try DatasetCatalog.load("mnist", dataDir: d) }
    // Image count disagrees with label count.
    write(idx([6, 28, 28], [UInt8](repeating: 0, count: 6 * 784)), to: images)
    expectError("7 labels but") { _ = try DatasetCatalog.load("mnist", dataDir: d) }
    // Images of the wrong size.
    write(idx([7, 20, 20], [UInt8](repeating: 0, count: 7 * 400)), to: images)
    expectError("images are 20x20, expected 28x28") { _ = try DatasetCatalog.load("mnist", dataDir: d) }
    // Truncated header.
    write([0, 0, 8], to: images)
    expectError("truncated IDX header") { _ = try DatasetCatalog.load("mnist", dataDir: d) }
    // Corrupt gzip.
    write([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7], to: images + ".gz")
    try FileManager.default.removeItem(atPath: images)
    expectError("corrupt or truncated gzip") { _ = try DatasetCatalog.load("mnist", dataDir: d) }
    // CIFAR: not whole records, labels out of range.
    let c = tempDir()
    for b in 1...5 { write([UInt8](repeating: 0, count: 3073), to: "\(c)/data_batch_\(b).bin") }
    write([UInt8](repeating: 0, count: 3000), to: "\(c)/test_batch.bin")
    expectError("not a whole number of 3073-byte CIFAR records") {
      _ = try DatasetCatalog.load("cifar10", dataDir: c)
    }
    write([12] + [UInt8](repeating: 0, count: 3072), to: "\(c)/test_batch.bin")
    expectError("label 12 outside 0..<10") { _ = try DatasetCatalog.load("cifar10", dataDir: c) }
  }

  @Test("missing and unknown data sets say where they looked")
  func missing() {
    let d = tempDir()
    expectError("cannot find train-images-idx3-ubyte[.gz]") {
      _ = try DatasetCatalog.load("mnist", dataDir: d)
    }
    expectError(d) { _ = try DatasetCatalog.load("cifar10", dataDir: d) }
    expectError("known: fashion_mnist, mnist, cifar10, cifar100, synthetic") {
      _ = try DatasetCatalog.load("imagenet")
    }
  }
}

@Suite("Batches, augmentation and splits")
struct LoaderTests {
  @Test("crop with padding and flip against a hand-computed example")
  func augmentation() {
    // One channel, 3x3 image 1..9, padding 1, pad value -1.
    let src: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    var dst = [Float](repeating: 0, count: 9)
    // Offset (0, 0) in the padded image = shift down-right by one.
    Augmentation.cropAndFlip(
      src, &dst, shape: [1, 3, 3], padding: 1, padValues: [-1], dy: 0, dx: 0, flip: false)
    #expect(dst == [-1, -1, -1, -1, 1, 2, -1, 4, 5])
    // Offset (2, 1) = shift up by one, no horizontal shift, then flip.
    Augmentation.cropAndFlip(
      src, &dst, shape: [1, 3, 3], padding: 1, padValues: [-1], dy: 2, dx: 1, flip: true)
    #expect(dst == [6, 5, 4, 9, 8, 7, -1, -1, -1])
    // Centre offset, no flip: the identity.
    Augmentation.cropAndFlip(
      src, &dst, shape: [1, 3, 3], padding: 1, padValues: [-1], dy: 1, dx: 1, flip: false)
    #expect(dst == src)
  }

  @Test(
    "feature-major batches hold the batch-major batch transposed, zero padding lanes, the same bits at 1-3 threads",
    arguments: [1, 7, 8, 13, 60, 64])
  func featureMajorBatches(n: Int) throws {
    // All of it under the pool lock: the cases run concurrently, and a case whose loop finds
    // the pool busy runs it serially.
    let fallbacks = try withExclusivePool { try Parallel.countingFallbacks { try featureMajorCase(n: n) } }
      .fallbacks
    #expect(fallbacks == 0, "a parallel loop ran serially")
  }
  func featureMajorCase(n: Int) throws {
    // Bytes (as Fashion-MNIST) with an odd example size, and floats.
    let e = 5 * 7
    var r = RandomStream(seed: 3, purpose: "feature-major-bytes")
    let bytes = (0..<(70 * e)).map { _ in UInt8(r.int(below: 256)) }
    let sets = [
      Dataset(
        name: "bytes", storage: .bytes(bytes), labels: (0..<70).map { Int32($0 % 10) }, shape: [1, 5, 7],
        classes: 10, mean: [0.3], std: [0.2]),
      Synthetic.make(count: 70, shape: [1, 5, 7], classes: 10, seed: 2),
    ]
    for ds in sets {
      let indices = (0..<n).map { ($0 * 37 + 11) % 70 }
      let plain = Tensor<Float>(zeros: [0])
      let labels = ds.gather(indices, into: plain)
      plain.reshape([n, e])
      var results: [[Float]] = []
      for t in 1...3 {
        let x = Tensor<Float>(zeros: [0])
        let got = Parallel.withThreads(t) { ds.gather(indices, into: x, featureMajor: true) }
        #expect(got == labels)
        #expect(x.layout == .featureMajor(batch: n))
        let ld = Sparse.paddedBatch(n)
        #expect(x.shape == [e, ld])
        var same = true
        for f in 0..<e {
          for k in 0..<ld {
            same = same && x[f * ld + k].bitPattern == (k < n ? plain[k * e + f] : 0).bitPattern
          }
        }
        #expect(same, "\(ds.name), \(t) threads")
        results.append(x.array)
      }
      #expect(results[1] == results[0] && results[2] == results[0])
    }
  }

  @Test("data order is a pure function of (seed, epoch, position); last partial batch kept")
  func order() throws {
    let ds = Synthetic.make(count: 25, shape: [1, 2, 2], classes: 3)
    let a = try BatchLoader(dataset: ds, batchSize: 10, seed: 5, augment: false)
    #expect(a.iterationsPerEpoch == 3)
    let epoch0 = (0..<3).flatMap { Array(a.indices(step: $0)) }
    #expect(epoch0.sorted() == Array(0..<25))
    #expect(a.indices(step: 2).count == 5)
    let epoch1 = (3..<6).flatMap { Array(a.indices(step: $0)) }
    #expect(epoch1 != epoch0 && epoch1.sorted() == Array(0..<25))
    // A fresh loader jumping straight to step 4 agrees.
    let b = try BatchLoader(dataset: ds, batchSize: 10, seed: 5, augment: false)
    #expect(Array(b.indices(step: 4)) == Array(a.indices(step: 4)))
    let c = try BatchLoader(dataset: ds, batchSize: 10, seed: 6, augment: false)
    #expect(Array(c.indices(step: 0)) != Array(a.indices(step: 0)))
    // Batches are the same whatever the thread count, with augmentation too.
    let img = Synthetic.make(count: 30, shape: [3, 8, 8], classes: 10)
    let p = try BatchLoader(dataset: img, batchSize: 7, seed: 1, augment: true)
    let q = try BatchLoader(dataset: img, batchSize: 7, seed: 1, augment: true)
    let x = Tensor<Float>(zeros: [0])
    // Under the pool lock: a loop that finds the pool busy runs serially and counts as a
    // fallback, which would fail a test that holds the lock and checks for none.
    withExclusivePool {
      for s in [0, 1, 2, 3, 4, 9, 10] {
        let (bx, bl) = Parallel.withThreads(3) { p.batch(step: s) }
        let ql = Parallel.withThreads(1) { q.fill(step: s, into: x) }
        #expect(bx.array == x.array && bl == ql, "step \(s)")
      }
    }
    #expect(throws: DataError.self) { try BatchLoader(dataset: ds, batchSize: 0, seed: 0, augment: false) }
  }

  @Test("8-bit pixels are normalised 16 at a time exactly as one at a time")
  func byteNormalisation() {
    // 3 channels of 7x7 = 49 pixels: three 16-pixel blocks and a tail per channel; every
    // byte value occurs.
    let (c, plane, n) = (3, 49, 6)
    let bytes = (0..<(n * c * plane)).map { UInt8(truncatingIfNeeded: $0 * 37 + $0 / 256) }
    let mean: [Float] = [0.4914, 0.4822, 0.4465]
    let std: [Float] = [0.247, 0.243, 0.261]
    let ds = Dataset(
      name: "t", storage: .bytes(bytes), labels: [Int32](repeating: 0, count: n), shape: [c, 7, 7],
      classes: 1, mean: mean, std: std)
    #expect(Set(bytes).count == 256)
    let x = Tensor<Float>(zeros: [0])
    _ = ds.gather(Array(0..<n), into: x)
    var expected: [Float] = []
    for i in 0..<n {
      for ch in 0..<c {
        let scale = 1 / (255 * std[ch])
        let shift = -mean[ch] / std[ch]
        for j in 0..<plane { expected.append(Float(bytes[(i * c + ch) * plane + j]) * scale + shift) }
      }
    }
    #expect(x.array.map(\.bitPattern) == expected.map(\.bitPattern))
  }

  @Test("validation split is fixed across replicates; subsample and random labels")
  func splits() throws {
    let ds = Synthetic.make(count: 100, shape: [1, 2, 2], classes: 10)
    let s = Splits(validationSize: 20)
    let (t1, v1) = try s.apply(to: ds)
    let (t2, v2) = try s.apply(to: ds)
    #expect(t1.count == 80 && v1!.count == 20)
    #expect(v1!.labels == v2!.labels && t1.labels == t2.labels)
    let (sub, _) = try Splits(validationSize: 20, subsampleFraction: 0.5).apply(to: ds)
    #expect(sub.count == 40)
    let (rl, _) = try Splits(randomLabelsFraction: 1).apply(to: ds)
    let changed = zip(rl.labels, ds.labels).filter { $0 != $1 }.count
    #expect(changed > 60)  // about 90% of random labels differ
    #expect(throws: SettingError.self) { try Splits(validationSize: 100).apply(to: ds) }
    #expect(throws: SettingError.self) { try Splits(subsampleFraction: 0).apply(to: ds) }
    #expect(throws: SettingError.self) { try Splits(randomLabelsFraction: 1.5).apply(to: ds) }
  }

  /// `make test` installs `dataset-fashion-mnist` first, so a missing package is a failure.
  @Test("Fashion-MNIST from the Debian package")
  func fashion() throws {
    let path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
    try #require(
      FileManager.default.fileExists(atPath: path),
      "\(path) missing: install dataset-fashion-mnist (make deps)")
    let (train, test) = try DatasetCatalog.load("fashion_mnist")
    #expect(train.count == 60000 && test.count == 10000 && train.classes == 10)
  }
}
