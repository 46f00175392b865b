import Engine

/// The model zoo: networks by name, as in the papers (see `docs/REFERENCE.md`).
///
/// | name | architecture |
/// |---|---|
/// | `mnist_lenet_N1_N2...` | fully connected `N1, N2, ...` with ReLU, then the output layer |
/// | `cifar_conv_2/4/6` | the lottery-ticket paper's Conv-N: 3x3 same convolutions in pairs of 64, 128, 256 with 2x2 max-pools, then fc 256, 256, output |
/// | `cifar_resnet_D[_W]` | CIFAR ResNet of depth `D` (`(D-2) % 6 == 0`), widths `W, 2W, 4W` (default 16) |
/// | `cifar_vgg_11/13/16/19` | VGG with batch norm, a global average pool and a single fc |
///
/// Width: `_wF` after a Conv-N or VGG name scales every hidden layer's width by `F`
/// (`cifar_conv_2_w0.5`: convolutions of 32 and fc layers of 128); LeNet and ResNet names
/// carry their widths. ``scaled(_:widthFactor:)`` turns any name and factor into the name
/// of the scaled network, so a width factor means the same for every family: each hidden
/// width `c` becomes `max(1, round(c * F))`; the output layer keeps the class count.
///
/// Models adapt to the data set's input shape and class count. Names of tensors follow
/// OpenLTH's PyTorch modules (`fc_layers.K`, `conv_layers.K`, `blocks.K.conv1`, `layers.K.conv`, `fc`).
public enum ModelZoo {
  /// Example names, one per family (for `lth models` and error messages).
  public static let families: [(example: String, nativeInput: [Int])] = [
    ("mnist_lenet_300_100", [1, 28, 28]),
    ("cifar_conv_2", [3, 32, 32]),
    ("cifar_conv_4", [3, 32, 32]),
    ("cifar_conv_6", [3, 32, 32]),
    ("cifar_resnet_20", [3, 32, 32]),
    ("cifar_resnet_20_64", [3, 32, 32]),
    ("cifar_vgg_11", [3, 32, 32]),
    ("cifar_vgg_13", [3, 32, 32]),
    ("cifar_vgg_16", [3, 32, 32]),
    ("cifar_vgg_19", [3, 32, 32]),
  ]

  public static let knownPatterns =
    "mnist_lenet_N1_N2..., cifar_conv_2, cifar_conv_4, cifar_conv_6, cifar_resnet_D, cifar_resnet_D_W, cifar_vgg_11, cifar_vgg_13, cifar_vgg_16, cifar_vgg_19 (Conv-N and VGG may end in _wF, a width factor)"

  /// A hidden width scaled by a width factor.
  public static func scaledWidth(_ c: Int, _ factor: Double) -> Int {
    max(1, Int((Double(c) * factor).rounded()))
  }

  /// The name and width factor of a Conv-N or VGG name with a `_wF` suffix
  /// (`cifar_vgg_11_w0.5` -> (`cifar_vgg_11`, 0.5)); other names have factor 1.
  public static func splitWidth(_ name: String) -> (base: String, factor: Double) {
    guard name.hasPrefix("cifar_conv_") || name.hasPrefix("cifar_vgg_"),
      let cut = name.range(of: "_w", options: .backwards), let f = Double(name[cut.upperBound...]), f > 0,
      f.isFinite
    else { return (name, 1) }
    return (String(name[..<cut.lowerBound]), f)
  }

  /// The name of `name`'s network with every hidden width scaled by `widthFactor`:
  /// `mnist_lenet_300_100` x 0.5 = `mnist_lenet_150_50`, `cifar_resnet_20` x 0.5 =
  /// `cifar_resnet_20_8`, `cifar_conv_2` x 0.5 = `cifar_conv_2_w0.5` (factor 1: unchanged).
  public static func scaled(_ name: String, widthFactor: Double) throws -> String {
    guard widthFactor > 0, widthFactor.isFinite else {
      throw EngineError("--width-factor must be positive, got \(widthFactor)")
    }
    if widthFactor == 1 { return name }
    let parts = name.split(separator: "_").map(String.init)
    let unknown = EngineError("unknown model '\(name)'; known: \(knownPatterns)")
    guard parts.count >= 3 else { throw unknown }
    switch (parts[0], parts[1]) {
    case ("mnist", "lenet"):
      let widths = try parts.dropFirst(2).map { p -> Int in
        guard let n = Int(p), n > 0 else { throw unknown }
        return scaledWidth(n, widthFactor)
      }
      return "mnist_lenet_" + widths.map(String.init).joined(separator: "_")
    case ("cifar", "resnet"):
      guard let depth = Int(parts[2]), parts.count <= 4 else { throw unknown }
      let width = parts.count == 4 ? Int(parts[3]) : 16
      guard let width, width > 0 else { throw unknown }
      return "cifar_resnet_\(depth)_\(scaledWidth(width, widthFactor))"
    case ("cifar", "conv"), ("cifar", "vgg"):
      let (base, f) = splitWidth(name)
      let total = f * widthFactor
      return total == 1 ? base : base + "_w" + formatFactor(total)
    default:
      throw unknown
    }
  }

  /// A factor as the shortest text that reads back to it (0.5, 2, 0.25).
  public static func formatFactor(_ f: Double) -> String {
    f == f.rounded() && abs(f) < 1e15 ? String(Int(f)) : "\(f)"
  }

  /// The native input shape of a model name's family (`[1, 28, 28]` for `mnist_*`, else `[3, 32, 32]`).
  public static func nativeInputShape(_ name: String) -> [Int] {
    name.hasPrefix("mnist_") ? [1, 28, 28] : [3, 32, 32]
  }

  /// Builds `name` for inputs `[C, H, W]` and `classes` outputs. Parameters are zero until
  /// ``Network/initialize(seed:weights:batchNorm:)`` is called.
  public static func make<T: Scalar>(
    _ name: String, inputShape: [Int]? = nil, classes: Int = 10, as: T.Type = Float.self
  ) throws -> Network<T> {
    let shape = inputShape ?? nativeInputShape(name)
    guard shape.count == 3, shape.allSatisfy({ $0 > 0 }), classes > 1 else {
      throw EngineError("\(name): input shape must be [C, H, W] and classes > 1, got \(shape), \(classes)")
    }
    let (baseName, factor) = splitWidth(name)
    let parts = baseName.split(separator: "_").map(String.init)
    let ints = parts.dropFirst(2).map { Int($0) }
    let unknown = EngineError("unknown model '\(name)'; known: \(knownPatterns)")
    guard parts.count >= 3, ints.allSatisfy({ $0 != nil && $0! > 0 }) else { throw unknown }
    let nums = ints.map { $0! }
    let body: Module<T>
    switch (parts[0], parts[1]) {
    case ("mnist", "lenet"):
      body = lenet(hidden: nums, input: shape, classes: classes)
    case ("cifar", "conv"):
      guard nums.count == 1, [2, 4, 6].contains(nums[0]) else { throw unknown }
      body = try convN(nums[0], input: shape, classes: classes, widthFactor: factor)
    case ("cifar", "resnet"):
      guard nums.count == 1 || nums.count == 2 else { throw unknown }
      let depth = nums[0]
      guard depth >= 8, (depth - 2) % 6 == 0 else {
        throw EngineError(
          "\(name): ResNet depth must satisfy (D - 2) % 6 == 0 and D >= 8 (20, 32, 44, 56, 110...), got \(depth)"
        )
      }
      body = resnet(depth: depth, width: nums.count == 2 ? nums[1] : 16, input: shape, classes: classes)
    case ("cifar", "vgg"):
      guard nums.count == 1, let plan = vggPlans[nums[0]] else { throw unknown }
      body = try vgg(plan: plan.map { $0 == 0 ? 0 : scaledWidth($0, factor) }, input: shape, classes: classes)
    default:
      throw unknown
    }
    return Network(name: name, body: body, inputShape: shape, classes: classes)
  }

  static func lenet<T: Scalar>(hidden: [Int], input: [Int], classes: Int) -> Module<T> {
    var layers: [(String, Module<T>)] = [("flatten", Flatten())]
    var width = input.reduce(1, *)
    for (i, h) in hidden.enumerated() {
      layers.append(("fc_layers.\(i)", Linear(width, h)))
      layers.append(("relu\(i)", ReLU()))
      width = h
    }
    layers.append(("fc", Linear(width, classes)))
    return Sequential(named: layers)
  }

  static func convN<T: Scalar>(_ n: Int, input: [Int], classes: Int, widthFactor: Double = 1) throws
    -> Module<T>
  {
    var layers: [(String, Module<T>)] = []
    var (c, h, w) = (input[0], input[1], input[2])
    let widths = [64, 128, 256].prefix(n / 2).map { scaledWidth($0, widthFactor) }
    var k = 0
    for width in widths {
      for _ in 0..<2 {
        layers.append(("conv_layers.\(k)", Conv2d(c, width, kernelSize: 3, padding: 1)))
        layers.append(("relu_c\(k)", ReLU()))
        c = width
        k += 1
      }
      layers.append(("pool\(k)", MaxPool2d(2)))
      (h, w) = (h / 2, w / 2)
      guard h > 0, w > 0 else {
        throw EngineError("cifar_conv_\(n): input \(input) is too small for \(n / 2) pooling stages")
      }
    }
    layers.append(("flatten", Flatten()))
    var width = c * h * w
    for (i, f) in [256, 256].map({ scaledWidth($0, widthFactor) }).enumerated() {
      layers.append(("fc_layers.\(i)", Linear(width, f)))
      layers.append(("relu_f\(i)", ReLU()))
      width = f
    }
    layers.append(("fc", Linear(width, classes)))
    return Sequential(named: layers)
  }

  static func resnet<T: Scalar>(depth: Int, width: Int, input: [Int], classes: Int) -> Module<T> {
    let perStage = (depth - 2) / 6
    var layers: [(String, Module<T>)] = [
      ("conv", Conv2d(input[0], width, kernelSize: 3, padding: 1, bias: false)),
      ("bn", BatchNorm(width)),
      ("relu", ReLU()),
    ]
    var c = width
    var b = 0
    for stage in 0..<3 {
      let out = width << stage
      for i in 0..<perStage {
        layers.append(("blocks.\(b)", BasicBlock(c, out, downsample: stage > 0 && i == 0)))
        c = out
        b += 1
      }
    }
    layers.append(("pool", GlobalAvgPool2d()))
    layers.append(("fc", Linear(c, classes)))
    return Sequential(named: layers)
  }

  static let vggPlans: [Int: [Int]] = [
    11: [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512],
    13: [64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512],
    16: [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512],
    19: [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512],
  ]

  /// OpenLTH's CIFAR VGG: `layers.K.conv` (3x3, bias) + `layers.K.bn` + ReLU, 2x2 max-pools
  /// (0 in the plan), then a global average pool and `fc`.
  static func vgg<T: Scalar>(plan: [Int], input: [Int], classes: Int) throws -> Module<T> {
    var layers: [(String, Module<T>)] = []
    var (c, h) = (input[0], min(input[1], input[2]))
    var k = 0
    for spec in plan {
      if spec == 0 {
        h /= 2
        guard h > 0 else {
          throw EngineError("cifar_vgg: input \(input) is too small for the pooling stages")
        }
        layers.append(("pool\(k)", MaxPool2d(2)))
      } else {
        layers.append(("layers.\(k).conv", Conv2d(c, spec, kernelSize: 3, padding: 1)))
        layers.append(("layers.\(k).bn", BatchNorm(spec)))
        layers.append(("relu\(k)", ReLU()))
        c = spec
        k += 1
      }
    }
    layers.append(("pool", GlobalAvgPool2d()))
    layers.append(("fc", Linear(c, classes)))
    return Sequential(named: layers)
  }
}
