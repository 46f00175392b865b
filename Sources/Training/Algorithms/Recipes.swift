import Engine
import Foundation
import NN

/// Composer's three ResNet-50 recipes (`--recipe mild|medium|hot`; Composer's recipe files
/// call the last one "spicy"), as lists of methods with the recipe files' parameters:
///
/// - mild: BlurPool, EMA (half-life 100 steps, updated every 20), label smoothing 0.08,
///   progressive resizing (initial scale 0.5, delay 0.4, fine-tune 0.2);
/// - medium: BlurPool, EMA, label smoothing 0.1, progressive resizing as mild, MixUp
///   (alpha 0.2), SAM (rho 0.5, every 10 steps);
/// - hot: BlurPool, EMA, label smoothing 0.13, progressive resizing (initial scale 0.6,
///   delay 0.2, fine-tune 0.2), MixUp (alpha 0.25), SAM (rho 0.5, every 5 steps), ColOut
///   (0.05 of rows and columns), stochastic depth (per sample, linear, 0.1). Composer's hot
///   recipe also has RandAugment, which is not built.
///
/// Adapted per model: a method whose surgery or input requirement refuses the model, or
/// that would change nothing in it, is left out (``expand(_:for:)``): Conv-N and VGG keep
/// BlurPool on their max pools but lose progressive resizing, ColOut and stochastic depth;
/// LeNet-300-100 keeps EMA, label smoothing, MixUp and SAM. Recipe-level settings of the
/// recipe files (optimizer, schedule, crop sizes, binary cross-entropy loss) are not part
/// of a recipe here: the model's own recipe stays.
public enum AlgorithmRecipes {
  public static let names = ["mild", "medium", "hot"]

  /// The recipe's methods in `--algorithms` syntax, before adaptation.
  public static func methods(_ recipe: String) throws -> String {
    let ema = "blurpool,ema:half_life=100ba;update_interval=20ba"
    switch recipe {
    case "mild":
      return ema
        + ",label_smoothing:smoothing=0.08,progressive_resizing:initial_scale=0.5;delay_fraction=0.4;finetune_fraction=0.2"
    case "medium":
      return ema
        + ",label_smoothing:smoothing=0.1,progressive_resizing:initial_scale=0.5;delay_fraction=0.4;finetune_fraction=0.2"
        + ",mixup:alpha=0.2,sam:rho=0.5;interval=10"
    case "hot":
      return ema
        + ",label_smoothing:smoothing=0.13,progressive_resizing:initial_scale=0.6;delay_fraction=0.2;finetune_fraction=0.2"
        + ",mixup:alpha=0.25,sam:rho=0.5;interval=5,colout:p_row=0.05;p_col=0.05"
        + ",stochastic_depth:stochastic_method=sample;drop_rate=0.1"
    default:
      throw EngineError("--recipe: unknown recipe '\(recipe)'; known: \(names.joined(separator: ", "))")
    }
  }

  /// The recipe adapted to a model: its methods whose `initialize` accepts `network` (a
  /// freshly built one, changed by the trial) and changes something in it; returns them
  /// and the names left out with why.
  public static func expand(_ recipe: String, for network: Network<Float>) throws -> (
    kept: [AlgorithmSpec], dropped: [(name: String, why: String)]
  ) {
    var kept: [AlgorithmSpec] = []
    var dropped: [(String, String)] = []
    for spec in try Algorithms.parse(try methods(recipe)) {
      if let why = try fits(spec, network: network) {
        dropped.append((spec.name, why))
      } else {
        kept.append(spec)
      }
    }
    return (kept, dropped)
  }

  /// Why a method does not fit `network` (its `initialize` refuses it, or changes nothing
  /// in it), or nil. The trial may change `network` (surgery): pass a fresh one.
  public static func fits(_ spec: AlgorithmSpec, network: Network<Float>) throws -> String? {
    let callback = try Algorithms.kind(spec.name)!.make(spec)
    do {
      let box = Box()
      try Algorithms.$silent.withValue(true) {
        try Algorithms.$changedNothing.withValue(box) { _ = try callback.initialize(network) }
      }
      return box.value ? "changes nothing in \(network.name)" : nil
    } catch {
      let text = "\(error)"
      let prefix = "--algorithms \(spec.name) "
      return text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text
    }
  }

  final class Box: @unchecked Sendable { var value = false }
}

extension Algorithms {
  /// Set while a recipe is adapted: warnings are not printed.
  @TaskLocal static var silent = false
  /// Set while a recipe is adapted: records that a surgery changed nothing.
  @TaskLocal static var changedNothing: AlgorithmRecipes.Box?
}
