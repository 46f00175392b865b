import Engine
import Foundation
import NN

/// A network's `state_dict` as safetensors: parameters and batch-norm buffers under their
/// PyTorch names (plus `num_batches_tracked`), so `safetensors.torch.load_file` followed by
/// `load_state_dict` restores the equivalent PyTorch module.
public enum ModelState {
  public static func entries<T: Scalar>(_ net: Network<T>, step: Int) -> [(String, Safetensors.Entry)] {
    var out = net.parameters.map { ($0.0, Safetensors.Entry($0.1.value)) }
    for (name, t) in net.buffers {
      out.append((name, Safetensors.Entry(t)))
      if name.hasSuffix(".running_var") {
        out.append(
          (
            String(name.dropLast("running_var".count)) + "num_batches_tracked",
            Safetensors.Entry(int64: Int64(step))
          ))
      }
    }
    return out
  }

  public static func save<T: Scalar>(
    _ net: Network<T>, step: Int, to path: String, metadata: [String: String] = [:]
  ) throws {
    var meta = metadata
    meta["model"] = net.name
    meta["step"] = String(step)
    try Safetensors.write(entries(net, step: step), metadata: meta, to: path)
  }

  /// Restores parameters and buffers; every tensor must be present with its shape.
  public static func restore<T: Scalar>(
    _ net: Network<T>, from tensors: [String: Safetensors.Entry], file: String
  ) throws {
    for (name, p) in net.parameters {
      guard let e = tensors[name] else {
        throw RunError("\(file): tensor \(name) is missing (a checkpoint of another model?)")
      }
      try e.copy(into: p.value, name: name, file: file)
    }
    for (name, b) in net.buffers {
      guard let e = tensors[name] else { throw RunError("\(file): tensor \(name) is missing") }
      try e.copy(into: b, name: name, file: file)
    }
  }

  /// Loads a state file into `net`; returns its step.
  @discardableResult
  public static func load<T: Scalar>(_ net: Network<T>, from path: String) throws -> Int {
    let (t, meta) = try Safetensors.read(path)
    if let m = meta["model"], m != net.name {
      throw RunError("\(path): holds a \(m) model, expected \(net.name)")
    }
    try restore(net, from: t, file: path)
    return Int(meta["step"] ?? "0") ?? 0
  }
}

/// Everything a run needs to resume bit-identically: the model state, the optimizer's
/// state tensors (`optimizer.<param>.<state>`) and step count, and the global step.
public enum Checkpoint {
  /// `extra` tensors and `extraMetadata` (the training callbacks' state, keys
  /// `callback.<name>.<key>`) are stored beside the model and optimizer; without them the
  /// file is byte for byte what earlier builds wrote.
  public static func save<T: Scalar>(
    network: Network<T>, optimizer: any Optimizer<T>, step: Int, to path: String,
    extra: [(String, Safetensors.Entry)] = [], extraMetadata: [String: String] = [:]
  ) throws {
    var entries = ModelState.entries(network, step: step)
    entries += optimizer.namedState.map { ("optimizer." + $0.0, Safetensors.Entry($0.1)) }
    entries += extra
    var meta = [
      "model": network.name, "step": String(step), "optimizer_steps": String(optimizer.stepCount),
      "format": "lotterykit-checkpoint-1",
    ]
    meta.merge(extraMetadata) { a, _ in a }
    try Safetensors.write(entries, metadata: meta, to: path)
  }

  /// Restores model and optimizer; returns the step.
  public static func load<T: Scalar>(network: Network<T>, optimizer: any Optimizer<T>, from path: String)
    throws -> Int
  {
    try loadWithExtras(network: network, optimizer: optimizer, from: path).step
  }

  /// Restores model and optimizer; returns the step, every tensor of the file and its
  /// metadata (where the training callbacks' state is).
  public static func loadWithExtras<T: Scalar>(
    network: Network<T>, optimizer: any Optimizer<T>, from path: String
  ) throws -> (step: Int, tensors: [String: Safetensors.Entry], metadata: [String: String]) {
    let (t, meta) = try Safetensors.read(path)
    guard meta["format"] == "lotterykit-checkpoint-1", let step = meta["step"].flatMap({ Int($0) }),
      let optSteps = meta["optimizer_steps"].flatMap({ Int($0) })
    else { throw RunError("\(path): not a LotteryKit checkpoint (metadata missing)") }
    if let m = meta["model"], m != network.name {
      throw RunError("\(path): holds a \(m) model, expected \(network.name)")
    }
    try ModelState.restore(network, from: t, file: path)
    for (name, s) in optimizer.namedState {
      guard let e = t["optimizer." + name] else {
        throw RunError("\(path): optimizer state \(name) is missing (another optimizer?)")
      }
      try e.copy(into: s, name: name, file: path)
    }
    optimizer.stepCount = optSteps
    return (step, t, meta)
  }
}
