/// # Families: model families, one file each
///
/// Everything LotteryKit knows about a family of networks lives in one file under
/// `Families/` and conforms to ``ModelFamily``: its name grammar, how it is built, its
/// default training recipe and pruning policy (``Recipe``), its default data set, its
/// `lth bench` defaults and its scaling-sweep knob. ``ModelZoo`` is the registry: adding a
/// family is one file plus one line in ``ModelZoo/all``; a test walks the registry (every
/// family parses its example names, builds, trains a step, round-trips through
/// safetensors, and has a recipe). Sits above NN (layers), Datasets and Pruning (policy).
import Engine
import NN
import Pruning

/// A family of networks named by a grammar (`mnist_lenet_N1_N2...`, `cifar_resnet_D[_W]`).
public protocol ModelFamily: Sendable {
  /// The family's name in scaling sweeps (`--family`): `cifar_resnet`.
  var name: String { get }
  /// The name grammar, for help and errors: `cifar_resnet_D, cifar_resnet_D_W`.
  var grammar: String { get }
  /// Names `lth models` lists.
  var examples: [String] { get }
  /// Input `[C, H, W]` of the family's own data set.
  var nativeInput: [Int] { get }
  /// The data set a run uses unless told otherwise.
  var defaultDataset: String { get }
  /// Whether a model name (without a `_wF` width suffix) belongs to this family.
  func matches(_ name: String) -> Bool
  /// Whether names may end in `_wF` (a width factor, see ``ModelZoo/scaled(_:widthFactor:)``).
  var takesWidthSuffix: Bool { get }
  /// The network's root module for inputs `input` and `classes` outputs; `widthFactor` is
  /// the `_wF` suffix's factor (1 without one).
  func body<T: Scalar>(_ name: String, widthFactor: Double, input: [Int], classes: Int) throws -> Module<T>
  /// The default recipe of a (base) name in this family.
  func recipe(_ name: String) -> Recipe
  /// The name of `name`'s network with every hidden width scaled by `factor` (not 1).
  func scaled(_ name: String, widthFactor: Double) throws -> String
  /// `lth bench`'s batch size and optimizer.
  var benchBatchSize: Int { get }
  func benchOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float>
  /// Scaling sweeps: whether the family has a depth knob (`--depths`), and the base model
  /// at depth `d` (nil without a knob; throws for a depth the family lacks).
  var hasDepthKnob: Bool { get }
  func model(depth d: Int) throws -> String?
  /// The depth `l` of the scaling law for a model of this family.
  func lawDepth(_ name: String) -> Double
}

extension ModelFamily {
  public var takesWidthSuffix: Bool { false }
  public var hasDepthKnob: Bool { false }
  public func model(depth d: Int) throws -> String? { nil }
  func unknown(_ name: String) -> EngineError {
    EngineError("unknown model '\(name)'; known: \(ModelZoo.knownPatterns)")
  }
  /// The positive integers after `<a>_<b>_` in a name (nil if any part is not one).
  func numbers(_ name: String) -> [Int]? {
    let parts = name.split(separator: "_").map(String.init)
    guard parts.count >= 3 else { return nil }
    let ints = parts.dropFirst(2).map { Int($0) }
    guard ints.allSatisfy({ $0 != nil && $0! > 0 }) else { return nil }
    return ints.map { $0! }
  }
}

/// The registry of model families, and the model-name functions built on it.
///
/// Width: `_wF` after a Conv-N or VGG name scales every hidden layer's width by `F`
/// (`cifar_conv_2_w0.5`: convolutions of 32 and fc layers of 128); LeNet and ResNet names
/// carry their widths. ``scaled(_:widthFactor:)`` turns any name and factor into the name
/// of the scaled network, so a width factor means the same for every family: each hidden
/// width `c` becomes `max(1, round(c * F))`; the output layer keeps the class count.
///
/// Models adapt to the data set's input shape and class count. Names of tensors follow
/// OpenLTH's PyTorch modules (`fc_layers.K`, `conv_layers.K`, `blocks.K.conv1`,
/// `layers.K.conv`, `fc`).
public enum ModelZoo {
  /// Every family, in the order `lth models` lists them. Add a family here.
  public static let all: [any ModelFamily] = [LeNet(), LeNet5(), ConvN(), ResNet(), VGG()]

  /// Example names with their native input (for `lth models`).
  public static var families: [(example: String, nativeInput: [Int])] {
    all.flatMap { f in f.examples.map { ($0, f.nativeInput) } }
  }

  public static var knownPatterns: String {
    all.map(\.grammar).joined(separator: ", ") + " (LeNet-5, Conv-N and VGG may end in _wF, a width factor)"
  }

  /// The family of a model name (a `_wF` suffix allowed where the family takes one).
  public static func family(of name: String) throws -> any ModelFamily {
    let base = splitWidth(name).base
    guard let f = all.first(where: { $0.matches(base) }) else {
      throw EngineError("unknown model '\(name)'; known: \(knownPatterns)")
    }
    return f
  }

  /// The family named `name` in scaling sweeps (`cifar_resnet`), if any.
  public static func family(named name: String) -> (any ModelFamily)? { all.first { $0.name == name } }

  /// A hidden width scaled by a width factor.
  public static func scaledWidth(_ c: Int, _ factor: Double) -> Int {
    max(1, Int((Double(c) * factor).rounded()))
  }

  /// The name and width factor of a name with a `_wF` suffix (`cifar_vgg_11_w0.5` ->
  /// (`cifar_vgg_11`, 0.5)); names of families without the suffix have factor 1.
  public static func splitWidth(_ name: String) -> (base: String, factor: Double) {
    guard let cut = name.range(of: "_w", options: .backwards), let f = Double(name[cut.upperBound...]), f > 0,
      f.isFinite
    else { return (name, 1) }
    let base = String(name[..<cut.lowerBound])
    guard all.contains(where: { $0.takesWidthSuffix && $0.matches(base) }) else { return (name, 1) }
    return (base, f)
  }

  /// The name of `name`'s network with every hidden width scaled by `widthFactor`:
  /// `mnist_lenet_300_100` x 0.5 = `mnist_lenet_150_50`, `cifar_resnet_20` x 0.5 =
  /// `cifar_resnet_20_8`, `cifar_conv_2` x 0.5 = `cifar_conv_2_w0.5` (factor 1: unchanged).
  public static func scaled(_ name: String, widthFactor: Double) throws -> String {
    guard widthFactor > 0, widthFactor.isFinite else {
      throw EngineError("the width factor must be positive, got \(widthFactor)")
    }
    if widthFactor == 1 { return name }
    return try family(of: name).scaled(name, widthFactor: widthFactor)
  }

  /// A factor as the shortest text that reads back to it (0.5, 2, 0.25).
  public static func formatFactor(_ f: Double) -> String {
    f == f.rounded() && abs(f) < 1e15 ? String(Int(f)) : "\(f)"
  }

  /// The native input shape of a model name's family (`[3, 32, 32]` for unknown names).
  public static func nativeInputShape(_ name: String) -> [Int] {
    (try? family(of: name).nativeInput) ?? [3, 32, 32]
  }

  /// Builds `name` for inputs `[C, H, W]` and `classes` outputs. Parameters are zero until
  /// ``NN/Network/initialize(seed:weights:batchNorm:)`` is called.
  public static func make<T: Scalar>(
    _ name: String, inputShape: [Int]? = nil, classes: Int = 10, as: T.Type = Float.self
  ) throws -> Network<T> {
    let f = try family(of: name)
    let shape = inputShape ?? f.nativeInput
    guard shape.count == 3, shape.allSatisfy({ $0 > 0 }), classes > 1 else {
      throw EngineError("\(name): input shape must be [C, H, W] and classes > 1, got \(shape), \(classes)")
    }
    let (base, factor) = splitWidth(name)
    let body: Module<T> = try f.body(base, widthFactor: factor, input: shape, classes: classes)
    return Network(name: name, body: body, inputShape: shape, classes: classes)
  }
}

extension Recipe {
  /// The recipe for a model name (its family's; a width factor changes widths, not the
  /// recipe), or an error listing the families.
  public static func forModel(_ fullName: String) throws -> Recipe {
    try ModelZoo.family(of: fullName).recipe(ModelZoo.splitWidth(fullName).base)
  }
}
