import Foundation

/// Data sets by name, where they are looked for, and their normalisation constants.
///
/// | name | files | default location |
/// |---|---|---|
/// | `fashion_mnist` | `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-...` | `/usr/share/datasets/fashion-mnist` (Debian package `dataset-fashion-mnist`) |
/// | `mnist` | same names as Fashion-MNIST | `--data-dir`, else `$LTH_DATA_DIR/mnist`, else `./data/mnist` |
/// | `cifar10` | `data_batch_1.bin` ... `data_batch_5.bin`, `test_batch.bin` | `--data-dir` (or its `cifar-10-batches-bin/`), else `$LTH_DATA_DIR/cifar10`, else `./data/cifar10` |
/// | `cifar100` | `train.bin`, `test.bin` | `--data-dir` (or its `cifar-100-binary/`), else `$LTH_DATA_DIR/cifar100`, else `./data/cifar100` |
/// | `synthetic` | none: class prototypes plus noise (``Synthetic``) | in memory |
public enum DatasetCatalog {
  public static let names = ["fashion_mnist", "mnist", "cifar10", "cifar100", "synthetic"]

  /// Input shape `[C, H, W]` and class count of a named data set (synthetic: `shape`).
  public static func info(_ name: String, syntheticShape: [Int] = [1, 28, 28]) throws -> (
    shape: [Int], classes: Int
  ) {
    switch name {
    case "fashion_mnist", "mnist": return ([1, 28, 28], 10)
    case "cifar10": return ([3, 32, 32], 10)
    case "cifar100": return ([3, 32, 32], 100)
    case "synthetic": return (syntheticShape, 10)
    default: throw DataError("unknown data set '\(name)'; known: \(names.joined(separator: ", "))")
    }
  }

  /// Whether the data set is CIFAR-like (random crop + flip augmentation by default).
  public static func augmentsByDefault(_ name: String) -> Bool { name.hasPrefix("cifar") }

  static func root(_ sub: String, dataDir: String?) -> String {
    if let d = dataDir { return d }
    if let env = ProcessInfo.processInfo.environment["LTH_DATA_DIR"] { return env + "/" + sub }
    return "./data/" + sub
  }

  static func find(_ file: String, in dirs: [String]) -> String? {
    for d in dirs {
      for candidate in [d + "/" + file, d + "/" + file + ".gz"]
      where FileManager.default.fileExists(atPath: candidate) {
        return candidate
      }
    }
    return nil
  }

  static func missing(_ name: String, _ files: [String], _ dirs: [String], _ how: String) -> DataError {
    DataError(
      "data set \(name): cannot find \(files.joined(separator: ", ")) in \(dirs.joined(separator: " or ")); \(how)"
    )
  }

  /// Loads the training and test sets of `name`. Synthetic data has `syntheticShape`.
  public static func load(
    _ name: String, dataDir: String? = nil, syntheticShape: [Int] = [1, 28, 28],
    syntheticTrainCount: Int = 6000, syntheticTestCount: Int = 1000
  ) throws -> (train: Dataset, test: Dataset) {
    switch name {
    case "synthetic":
      let all = Synthetic.make(
        count: syntheticTrainCount + syntheticTestCount, shape: syntheticShape, classes: 10, seed: 0,
        noise: 4)
      return (
        all.subset(Array(0..<syntheticTrainCount)),
        all.subset(Array(syntheticTrainCount..<(syntheticTrainCount + syntheticTestCount)))
      )
    case "fashion_mnist", "mnist":
      let fashion = name == "fashion_mnist"
      let dir = fashion ? (dataDir ?? "/usr/share/datasets/fashion-mnist") : root("mnist", dataDir: dataDir)
      let files = [
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
      ]
      let paths = files.map { find($0, in: [dir]) }
      guard paths.allSatisfy({ $0 != nil }) else {
        throw missing(
          name, files.map { $0 + "[.gz]" }, [dir],
          fashion
            ? "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir"
            : "put the four MNIST IDX files there or pass --data-dir (docs/guide-training.md, \"Data sets\")"
        )
      }
      let (mean, std): (Float, Float) = fashion ? (0.2860, 0.3530) : (0.1307, 0.3081)
      let train = try IDX.load(images: paths[0]!, labels: paths[1]!, name: name, mean: mean, std: std)
      let test = try IDX.load(images: paths[2]!, labels: paths[3]!, name: name, mean: mean, std: std)
      return (train, test)
    case "cifar10", "cifar100":
      let ten = name == "cifar10"
      let base = root(name, dataDir: dataDir)
      let dirs = [base, base + (ten ? "/cifar-10-batches-bin" : "/cifar-100-binary")]
      let trainFiles = ten ? (1...5).map { "data_batch_\($0).bin" } : ["train.bin"]
      let testFiles = ten ? ["test_batch.bin"] : ["test.bin"]
      let found = (trainFiles + testFiles).map { find($0, in: dirs) }
      guard found.allSatisfy({ $0 != nil }) else {
        throw missing(
          name, trainFiles + testFiles, dirs,
          "put the binary version's files there or pass --data-dir (docs/guide-training.md, \"Data sets\")"
        )
      }
      let mean: [Float] = ten ? [0.4914, 0.4822, 0.4465] : [0.5071, 0.4865, 0.4409]
      let std: [Float] = ten ? [0.2470, 0.2435, 0.2616] : [0.2673, 0.2564, 0.2762]
      let classes = ten ? 10 : 100
      let labelBytes = ten ? 1 : 2
      let train = try CIFAR.load(
        files: Array(found[0..<trainFiles.count].map { $0! }), labelBytes: labelBytes, classes: classes,
        name: name, mean: mean, std: std)
      let test = try CIFAR.load(
        files: Array(found[trainFiles.count...].map { $0! }), labelBytes: labelBytes, classes: classes,
        name: name, mean: mean, std: std)
      return (train, test)
    default:
      throw DataError("unknown data set '\(name)'; known: \(names.joined(separator: ", "))")
    }
  }
}
