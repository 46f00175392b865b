import Engine
import Experiments
import Foundation
import TestSupport
import Testing

/// Every hyperparameter is declared once (``HyperparameterKey``): these tests check that the
/// declarations are what the JSON holds and what `lth` offers as flags.
@Suite("Hyperparameters declared once")
struct HyperparameterTests {
  func keys(_ json: String, path: [String] = []) throws -> Set<String> {
    var o = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
    for p in path { o = o[p] as! [String: Any] }
    return Set(o.keys)
  }

  /// A resolved lottery with every optional field set, so that every key is encoded.
  func everything() throws -> LotteryHParams {
    var o = TrainingOverrides()
    o.convBackend = .im2col
    o.sparseKernels = .off
    o.algorithms = "label_smoothing"
    o.testEvalEvery = "2ep"
    let t = try TrainingHParams.resolve(model: "mnist_lenet_64_32", o)
    var l = LotteryOverrides()
    l.retrain = .finetune
    l.finetuneSteps = "1ep"
    l.pruningFractionConv = 0.1
    l.pruningFractionOutput = 0.1
    return try LotteryHParams.resolve(t, l)
  }

  @Test("the declared keys are exactly the JSON keys of each group")
  func jsonKeys() throws {
    let h = try everything()
    let text = h.canonicalJSON()
    #expect(try keys(text) == Set(LotteryHParams.CodingKeys.allCases.map(\.stringValue)))
    #expect(try keys(text, path: ["training"]) == Set(TrainingHParams.CodingKeys.allCases.map(\.stringValue)))
    #expect(try keys(text, path: ["pruning"]) == Set(LotteryHParams.PruningKey.allCases.map(\.stringValue)))
    let p = try PaIHParams(
      training: h.training, method: PaIHParams.afterTraining, allocation: .global, rounds: nil, scoreBatch: 10,
      atStep: nil, ignore: [], minDensity: 0.01, retrain: .finetune, rewindStep: "0it", finetuneSteps: "1ep")
    // at_step does not apply to pruning after training and score_batch only to data-driven
    // methods; every other key is encoded.
    #expect(
      try keys(p.canonicalJSON())
        == Set(PaIHParams.CodingKeys.allCases.map(\.stringValue)).subtracting(["at_step", "score_batch"]))
  }

  @Test("closed value sets are enums whose JSON is the same text as before")
  func enumsEncodeAsText() throws {
    let t = try everything().training
    let text = t.canonicalJSON()
    for needle in [
      "\"optimizer\":\"adam\"", "\"schedule\":\"constant\"", "\"initializer\":\"glorot_normal\"",
      "\"batch_norm_init\":\"ones\"", "\"conv_backend\":\"im2col\"", "\"sparse_kernels\":\"off\"",
    ] {
      #expect(text.contains(needle), "\(needle) in \(text)")
    }
    // auto is left out, so runs from before the field existed keep their hash.
    var o = TrainingOverrides()
    o.convBackend = .auto
    #expect(try !TrainingHParams.resolve(model: "mnist_lenet_64_32", o).canonicalJSON().contains("conv_backend"))
  }

  @Test("a bad value names its key, which the CLI words as its flag")
  func settingErrors() throws {
    var o = TrainingOverrides()
    o.lr = -1
    #expect {
      _ = try TrainingHParams.resolve(model: "mnist_lenet_64_32", o)
    } throws: { ($0 as? SettingError)?.flag == "--lr" }
    let t = try TrainingHParams.resolve(model: "mnist_lenet_64_32", TrainingOverrides())
    var l = LotteryOverrides()
    l.pruningFraction = 1.5
    #expect {
      _ = try LotteryHParams.resolve(t, l)
    } throws: { ($0 as? SettingError)?.flag == "--pruning-fraction" }
    l = LotteryOverrides()
    l.finetuneSteps = "2ep"
    #expect {
      _ = try LotteryHParams.resolve(t, l)
    } throws: { ($0 as? SettingError)?.flag == "--finetune-steps" }
  }

  @Test("every declared flag is a flag of lth with the declared help", .tags(.endToEnd), .endToEnd)
  func flagsInHelp() throws {
    func help(_ command: [String]) throws -> String {
      let r = try CLI.run(command + ["--help"])
      // Help is wrapped at the terminal width: compare with single spaces.
      return r.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }
    let lottery = try help(["lottery"])
    let pai = try help(["prune-init"])
    var seen: Set<String> = []
    for e in HyperparameterGroups.all {
      guard let flag = e.flag else { continue }
      let text = e.group == "prune_init" ? pai : lottery
      #expect(text.contains("--\(flag) "), "\(e.group).\(e.key): --\(flag) missing from help")
      // A flag shared by two groups (prune-init's --retrain is the lottery's) shows the
      // first group's help.
      guard seen.insert(flag).inserted else { continue }
      let words = e.help.split(whereSeparator: \.isWhitespace).joined(separator: " ")
      #expect(text.contains(words), "\(e.group).\(e.key): help '\(words)' missing from lth's help")
    }
    #expect(HyperparameterGroups.all.filter { !$0.hashed }.allSatisfy { $0.group == "settings" })
  }

  @Test("Conv-2/4/6 train without augmentation by default, as the LTH paper; ResNet and VGG with it")
  func convAugmentation() throws {
    for (model, augment) in [
      ("cifar_conv_2", false), ("cifar_conv_4", false), ("cifar_conv_6", false), ("cifar_resnet_20", true),
      ("cifar_vgg_11", true),
    ] {
      #expect(try TrainingHParams.resolve(model: model, TrainingOverrides()).augment == augment, "\(model)")
    }
    var o = TrainingOverrides()
    o.augment = true
    #expect(try TrainingHParams.resolve(model: "cifar_conv_2", o).augment)
  }

  @Test("ResNet and VGG rewind to a sixteenth of training by default, scaled with its length; LeNet to 0")
  func rewindDefaults() throws {
    for (model, rewind) in [
      ("mnist_lenet_300_100", "0it"), ("cifar_conv_2", "0it"), ("cifar_resnet_20", "T/16"), ("cifar_vgg_11", "T/16"),
    ] {
      let t = try TrainingHParams.resolve(model: model, TrainingOverrides())
      #expect(try LotteryHParams.resolve(t).rewindStep == rewind, "\(model)")
    }
    // 160 epochs of 391 iterations: epoch 10; a 3-epoch run of 10 iterations: iteration 1.
    #expect(try rewindIterations("T/16", perEpoch: 391, total: 160 * 391) == 10 * 391)
    #expect(try rewindIterations("T/16", perEpoch: 10, total: 30) == 1)
    #expect(try rewindIterations("2ep", perEpoch: 10, total: 30) == 20)
    var o = LotteryOverrides()
    o.rewindStep = "T/0"
    let t = try TrainingHParams.resolve(model: "cifar_resnet_20", TrainingOverrides())
    #expect { _ = try LotteryHParams.resolve(t, o) } throws: { ($0 as? SettingError)?.flag == "--rewind-step" }
  }
}
