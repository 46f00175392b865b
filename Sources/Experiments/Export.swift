import Datasets
import Engine
import Families
import Foundation
import NN
import Pruning
import Training

/// `lth export --format sparse`: a pruned network as one safetensors file, a "ticket" that
/// carries everything needed to deploy it or to retrain it.
///
/// For every pruned weight `W` (`[out, in]`, or OIHW as `[O, I*KH*KW]`), in compressed
/// sparse rows, as `torch.sparse_csr_tensor(crow_indices, col_indices, values, size)` takes
/// them:
///
/// | tensor | dtype | shape |
/// |---|---|---|
/// | `<name>.crow_indices` | I64 | `[rows + 1]` |
/// | `<name>.col_indices` | I64 | `[nnz]` |
/// | `<name>.values` | F32 | `[nnz]` (the trained weights) |
/// | `<name>.mask` | F32 | the weight's shape (1 kept, 0 pruned) |
///
/// Every other tensor of the trained `state_dict` (biases, batch norm) keeps its PyTorch
/// name. The state to retrain from follows under the prefixes `init.` (the network at step
/// 0) and `rewind.` (at the rewind step), dense, every tensor. The header's metadata holds
/// `format` (`lotterykit-sparse-ticket-1`), `model`, `dataset`, `level`, `density`, `rewind_step`,
/// `shapes` (JSON: dense shape of each sparse weight), `source` and `lotterykit_version`.
public enum SparseExport {
  public static let format = "lotterykit-sparse-ticket-1"

  /// The files of one level of a lottery or pruning-at-initialisation run (`.../level_L` or
  /// `.../level_L/main`, or a PaI `density_D` folder).
  public struct Level {
    public var directory: String
    public var model: String
    public var dataset: String
    public var finalState: String
    public var mask: String
    public var initState: String?
    public var rewindState: String?
    public var rewindStep: String
  }

  /// Finds the files of the level at `path`.
  public static func locate(_ path: String) throws -> Level {
    let fm = FileManager.default
    var dir = (path as NSString).standardizingPath
    if fm.fileExists(atPath: RunFile.modelFinal.path(in: RunLayout.main(dir))) { dir = RunLayout.main(dir) }
    for f in [RunFile.modelFinal, .mask] where !fm.fileExists(atPath: f.path(in: dir)) {
      throw RunError("\(path): no \(f.rawValue) (expected a finished level folder such as RUN/replicate_1/level_5)")
    }
    // The experiment root: the nearest folder above with hparams.json naming a model.
    var root = dir
    var training: JSONValue? = nil
    var top: JSONValue? = nil
    while root != "/" && !root.isEmpty {
      root = (root as NSString).deletingLastPathComponent
      let h = RunFile.hparams.path(in: root)
      guard fm.fileExists(atPath: h) else { continue }
      guard let hp = JSONValue.parse(try AtomicFile.read(h))?["hparams"], hp.object != nil else {
        throw RunError("\(h) is unreadable")
      }
      if let t = hp["training"], t.object != nil {
        (training, top) = (t, hp)
        break
      }
    }
    guard let training, let model = training["model"]?.string, let dataset = training["dataset"]?.string
    else { throw RunError("\(path): no experiment \(RunFile.hparams.rawValue) above it names the model") }
    // Level 0 holds the initial and rewind-step states (lottery); PaI keeps the start state
    // in the level itself.
    let level0 =
      ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent + "/level_0/main"
    func existing(_ p: String) -> String? { fm.fileExists(atPath: p) ? p : nil }
    return Level(
      directory: dir, model: model, dataset: dataset, finalState: RunFile.modelFinal.path(in: dir),
      mask: RunFile.mask.path(in: dir),
      initState: existing(RunFile.modelInit.path(in: level0)) ?? existing(RunFile.modelStart.path(in: dir)),
      rewindState: existing(RunFile.modelRewind.path(in: level0))
        ?? existing(RunFile.modelStart.path(in: dir)),
      rewindStep: top?["rewind_step"]?.string ?? "0it")
  }

  /// A network of the level's model for its data set's input shape and classes.
  public static func makeNetwork(model: String, dataset: String) throws -> Network<Float> {
    let (shape, classes) = try DatasetCatalog.info(dataset, syntheticShape: ModelZoo.nativeInputShape(model))
    return try ModelZoo.make(model, inputShape: shape, classes: classes)
  }

  /// Writes the export of `level` to `output` (atomically). Returns the density.
  @discardableResult
  public static func write(_ level: Level, to output: String) throws -> Double {
    let net = try makeNetwork(model: level.model, dataset: level.dataset)
    try ModelState.load(net, from: level.finalState)
    let mask = try Mask.load(level.mask, for: net)
    try mask.apply(to: net)
    var entries: [(String, Safetensors.Entry)] = []
    var shapes: [String: [Int]] = [:]
    let sparseNames = Set(mask.names)
    for (name, e) in ModelState.entries(net, step: 0) {
      guard sparseNames.contains(name), let p = net.parameter(name) else {
        if !name.hasSuffix("num_batches_tracked") { entries.append((name, e)) }
        continue
      }
      let rows = p.value.shape[0]
      let pattern = try SparsePattern(mask: p.mask!, rows: rows)
      let crow = (0...rows).map { Int64(pattern.rowStart[$0]) }
      let col = pattern.colIndex.map { Int64($0) }
      let values = pattern.positions.map { p.value.data[$0] }
      entries.append((name + ".crow_indices", int64Entry(crow)))
      entries.append((name + ".col_indices", int64Entry(col)))
      entries.append((name + ".values", Safetensors.Entry(Tensor(values, shape: [values.count]))))
      entries.append((name + ".mask", Safetensors.Entry(p.mask!)))
      shapes[name] = p.value.shape
    }
    for (prefix, path) in [("init.", level.initState), ("rewind.", level.rewindState)] {
      guard let path else { continue }
      let state = try makeNetwork(model: level.model, dataset: level.dataset)
      try ModelState.load(state, from: path)
      entries += ModelState.entries(state, step: 0).filter { !$0.0.hasSuffix("num_batches_tracked") }
        .map { (prefix + $0.0, $0.1) }
    }
    let shapesJSON = String(
      decoding: try JSONSerialization.data(withJSONObject: shapes, options: [.sortedKeys]), as: UTF8.self)
    let levelName =
      (level.directory as NSString).lastPathComponent == "main"
      ? ((level.directory as NSString).deletingLastPathComponent as NSString).lastPathComponent
      : (level.directory as NSString).lastPathComponent
    try Safetensors.write(
      entries,
      metadata: [
        "format": format, "model": level.model, "dataset": level.dataset, "level": levelName,
        "density": String(mask.density), "rewind_step": level.rewindStep, "shapes": shapesJSON,
        "source": level.directory, "lotterykit_version": LotteryKitVersion.version,
      ], to: output)
    return mask.density
  }

  static func int64Entry(_ v: [Int64]) -> Safetensors.Entry {
    Safetensors.Entry(
      dtype: .I64, shape: [v.count], bytes: v.withUnsafeBytes { [UInt8]($0) })
  }

  /// Loads an export: the trained network with its masks applied (so pruned layers run on
  /// sparse kernels). Every structural inconsistency is one error naming the file.
  public static func load(_ path: String) throws -> Network<Float> {
    let (t, meta) = try Safetensors.read(path)
    guard meta["format"] == format, let model = meta["model"], let dataset = meta["dataset"] else {
      throw RunError("\(path): not a LotteryKit sparse export (no format \(format) in its metadata)")
    }
    let net = try makeNetwork(model: model, dataset: dataset)
    var dense: [String: Safetensors.Entry] = [:]
    for (name, p) in net.parameters {
      guard let crowE = t[name + ".crow_indices"] else {
        dense[name] = t[name]
        continue
      }
      guard let colE = t[name + ".col_indices"], let valE = t[name + ".values"],
        let maskE = t[name + ".mask"],
        crowE.dtype == .I64, colE.dtype == .I64, valE.dtype == .F32
      else { throw RunError("\(path): sparse tensor \(name) is incomplete") }
      let rows = p.value.shape[0]
      let cols = p.value.count / rows
      let crow: [Int64] = crowE.bytes.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
      let col: [Int64] = colE.bytes.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
      let values: [Float] = valE.values()
      guard crow.count == rows + 1, crow.first == 0, crow.last == Int64(col.count), col.count == values.count,
        zip(crow, crow.dropFirst()).allSatisfy({ $0 <= $1 }), col.allSatisfy({ $0 >= 0 && $0 < cols })
      else {
        throw RunError(
          "\(path): sparse tensor \(name) is corrupt (indices do not describe a \(rows)x\(cols) matrix)")
      }
      let mask = Tensor<Float>(zeros: p.value.shape)
      try maskE.copy(into: mask, name: name + ".mask", file: path)
      p.value.zero()
      for r in 0..<rows {
        for e in Int(crow[r])..<Int(crow[r + 1]) {
          let i = r * cols + Int(col[e])
          guard mask[i] == 1 else {
            throw RunError("\(path): sparse tensor \(name) has a value where its mask is 0")
          }
          p.value[i] = values[e]
        }
      }
      let kept = (0..<mask.count).reduce(0) { $0 + (mask[$1] != 0 ? 1 : 0) }
      guard kept == values.count else {
        throw RunError("\(path): the mask of \(name) keeps \(kept) weights, its values are \(values.count)")
      }
      p.mask = mask
    }
    for (name, p) in net.parameters where p.mask == nil {
      guard let e = dense[name] else { throw RunError("\(path): tensor \(name) is missing") }
      try e.copy(into: p.value, name: name, file: path)
    }
    for (name, b) in net.buffers {
      guard let e = t[name] else { throw RunError("\(path): tensor \(name) is missing") }
      try e.copy(into: b, name: name, file: path)
    }
    return net
  }
}
