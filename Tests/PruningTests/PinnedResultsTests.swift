import Engine
import Experiments
import Foundation
import TestSupport
import Testing

/// The pinned results: a small fixed LeNet lottery (two IMP levels with weight rewinding to
/// epoch 1, then the random-reinit control at level 1) must give these run hashes,
/// accuracies and file bytes, build after build. A change that alters any of them is
/// deliberate: it updates this pin in a commit of its own that says why.
///
/// Masks, initial weights and run hashes are the same on every CPU. Trained weights are
/// not: oneDNN's single-precision products sum in another order with AVX-512 than with
/// AVX2, so the trained files have one pin per product-kernel family; `make test` runs the
/// suite a second time capped at AVX2 on an AVX-512 machine, so both pins are checked there.
let pinnedLotteryArgs = [
  "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1",
  "--training-steps", "4ep", "--eval-every", "2ep", "--rewind-step", "1ep", "--threads", "2", "--quiet",
]

// Pinned on 9bc213f (the build before the architecture redesign), AMD EPYC family 25
// model 17, oneDNN ISA avx512_core_bf16 and avx2 (DNNL_MAX_CPU_ISA=AVX2).
let pinnedFolder = "lottery_9aff2d5fada30ffd"
let pinnedBranchHash = "92e7a3d4ecaa81e5"

/// SHA-256 of the files that do not depend on the CPU.
let pinnedCommonFiles: [String: String] = [
  "replicate_1/level_0/main/mask.safetensors": "d12d4b3a9ce2e8d1adaa59efa47816562b60fe202481637e8238e0c621830bfb",
  "replicate_1/level_0/main/model_init.safetensors": "694b6d3248b44c86627c7539692e650195ab98a8d0440c65598175efef01aafb",
  "replicate_1/level_0/main/model_start.safetensors": "694b6d3248b44c86627c7539692e650195ab98a8d0440c65598175efef01aafb",
  "replicate_1/level_1/branch_random-reinit_92e7a3d4ecaa81e5/mask.safetensors": "898883c375cc5819fcbb8de3c52f9b3f46af515040d5462bd8992d576b67f9e6",
  "replicate_1/level_1/branch_random-reinit_92e7a3d4ecaa81e5/model_start.safetensors": "4ed1a2b7631062ee5b6a560b04cbe6747f09543c774784cd32fca66864f0da93",
  "replicate_1/level_1/main/mask.safetensors": "898883c375cc5819fcbb8de3c52f9b3f46af515040d5462bd8992d576b67f9e6",
  "replicate_1/level_2/main/mask.safetensors": "ac9d4da1f62555efab626a5e41540eb813e552df7bfaa74c399002e81acf4334",
]

/// SHA-256 of the trained files, by the family of oneDNN's ISA.
let pinnedTrainedFiles: [String: [String: String]] = [
  "avx512": [
    "replicate_1/level_0/main/checkpoint.safetensors": "e889b3f831ea6813b82a357b4a0c4d5981d58d8de74aee4210e3085c89b1c323",
    "replicate_1/level_0/main/model_final.safetensors": "b1b30bec2d46801b6afeef2030461aa6901f91dbc889e9a9013a15d66f26e769",
    "replicate_1/level_0/main/model_rewind.safetensors": "e4730739bd4b84211db2b551e8f7c2be938bd922d7c155c2f21790a9becfb7e7",
    "replicate_1/level_1/branch_random-reinit_92e7a3d4ecaa81e5/checkpoint.safetensors": "ce2ee57955772c003c81849444258f656cfbf2d04225ecaa7e06fc6da948f64e",
    "replicate_1/level_1/branch_random-reinit_92e7a3d4ecaa81e5/model_final.safetensors": "b1396a07b0c9439bac90ee7fcac23d36ef2f73eedc9b09a1fa9dca735e09e377",
    "replicate_1/level_1/main/checkpoint.safetensors": "9132c820f9a62892cbc2dc9028424e1baf716b33f41e971bf47155cdfe2f6354",
    "replicate_1/level_1/main/model_final.safetensors": "a57f5ebe11f754acf59ed2de2adeee628725687948ed91dbf83a8e2b7eb33bae",
    "replicate_1/level_1/main/model_start.safetensors": "07a98c4821764e26c0ed73f761e5a35d31914663a14b200b71948b4a7706554b",
    "replicate_1/level_2/main/checkpoint.safetensors": "44f53503785a6a2659b1a4e5bbf9d07ea445692758d8815821509f28ccece9d0",
    "replicate_1/level_2/main/model_final.safetensors": "64c5ff87daa9d77d74df620a973cc18e29155aa5d73691b7e98576720af03f26",
    "replicate_1/level_2/main/model_start.safetensors": "f361886bdfbeb89209839ea3c736149ebf33a9d0028f50589fb99ae1ddfe54c2",
  ],
  "avx2": [
    "replicate_1/level_0/main/checkpoint.safetensors": "103fb1d18b1c5b53fe2d26625acc9d7dd9917c436052030f37f5aae96ea70785",
    "replicate_1/level_0/main/model_final.safetensors": "ca1ad004f89f19f6fffb3205c66cc326569fdca369178d18733600738babb2ba",
    "replicate_1/level_0/main/model_rewind.safetensors": "0b5d890c76e5f35ffb8c1790ae05857252dc33e8ccf37d4b4211d6069f2e3387",
    "replicate_1/level_1/branch_random-reinit_92e7a3d4ecaa81e5/checkpoint.safetensors": "4dde803f2c6d478957411de207dc4577c8415c7703155684d42049de5d316b5d",
    "replicate_1/level_1/branch_random-reinit_92e7a3d4ecaa81e5/model_final.safetensors": "3bec392ab40af6ae6766111b64f37cf8c3fc1e85458e884d499270f93f23a1c2",
    "replicate_1/level_1/main/checkpoint.safetensors": "09bbc6d99da72ef33df3faf5493620483f8f77f117cd766669dcdeb5aa1462b8",
    "replicate_1/level_1/main/model_final.safetensors": "e3dfff8436e268e77d82599f92695e66d2e8e46008b6483d8c0375896bfeaaaf",
    "replicate_1/level_1/main/model_start.safetensors": "d3bfc9105b0704065f2ddb843ca2dc17102b5b056259b160b0bc6b4db240a2fa",
    "replicate_1/level_2/main/checkpoint.safetensors": "1b6a449ab1918f89fb2f5244ae23801a62c2af14c12e38f436ac5b310da60f53",
    "replicate_1/level_2/main/model_final.safetensors": "9f9266dc28cbdb5aa1f9abdbb42360bcfde9881b50a92901d382d39ee054969c",
    "replicate_1/level_2/main/model_start.safetensors": "cc87c802e4fb5a0daa6b8a0ba177a85f16b46f2b29f2a1daa1f421633701e0fa",
  ],
]

/// Level: test accuracy at the end, and the learning curve's test accuracies.
let pinnedAccuracies: [(level: Int, final: Double, curve: [Double])] = [
  (0, 0.634, [0.133, 0.447, 0.634]),
  (1, 0.675, [0.316, 0.497, 0.675]),
  (2, 0.67, [0.383, 0.524, 0.67]),
]
let pinnedBranchAccuracy = (final: 0.543, curve: [0.096, 0.215, 0.543])

/// The part of `lth results --json` that the pin reads.
private struct PinnedLevel: Decodable {
  struct Curve: Decodable {
    var testAccuracyMean: [Double]
    enum CodingKeys: String, CodingKey { case testAccuracyMean = "test_accuracy_mean" }
  }
  struct Branch: Decodable {
    var hash: String
    var testAccuracyMean: Double
    var learningCurve: Curve
    enum CodingKeys: String, CodingKey {
      case hash
      case testAccuracyMean = "test_accuracy_mean"
      case learningCurve = "learning_curve"
    }
  }
  var level: Int
  var testAccuracyMean: Double
  var learningCurve: Curve
  var branches: [String: Branch]
  enum CodingKeys: String, CodingKey {
    case level, branches
    case testAccuracyMean = "test_accuracy_mean"
    case learningCurve = "learning_curve"
  }
}
private struct PinnedResults: Decodable { var levels: [PinnedLevel] }

@Suite("Pinned results", .serialized, .tags(.endToEnd), .endToEnd)
struct PinnedResultsTests {
  @Test("a fixed LeNet lottery gives the pinned run hash, accuracies and file bytes")
  func pinnedLottery() throws {
    let out = CLI.tempDir()
    let a = pinnedLotteryArgs + ["--output", out]
    let l = try CLI.run(["lottery"] + a + ["--levels", "2"])
    #expect(l.status == 0, "\(l.stderr)")
    let b = try CLI.run(["branch", "random-reinit"] + a + ["--levels", "1"])
    #expect(b.status == 0, "\(b.stderr)")
    let root = out + "/" + pinnedFolder
    let folders = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
    try #require(FileManager.default.fileExists(atPath: root), "the run hash changed: \(folders)")
    func sha(_ rel: String) -> String? {
      FileManager.default.contents(atPath: root + "/" + rel).map { RunHash.sha256(bytes: Array($0)) }
    }
    for (file, digest) in pinnedCommonFiles.sorted(by: { $0.key < $1.key }) {
      #expect(sha(file) == digest, "\(file) changed")
    }
    let isa = Convolution.onednnISA ?? "none"
    let family = isa.hasPrefix("avx512") ? "avx512" : isa.hasPrefix("avx2") ? "avx2" : nil
    if let family, let pins = pinnedTrainedFiles[family] {
      for (file, digest) in pins.sorted(by: { $0.key < $1.key }) {
        #expect(sha(file) == digest, "\(file) changed (oneDNN ISA \(isa))")
      }
    }
    let r = try CLI.run(["results", root, "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let results = try JSONDecoder().decode(PinnedResults.self, from: Data(r.stdout.utf8))
    #expect(results.levels.count == pinnedAccuracies.count)
    for (row, pin) in zip(results.levels, pinnedAccuracies) {
      #expect(row.level == pin.level)
      #expect(row.testAccuracyMean == pin.final, "level \(pin.level)")
      #expect(row.learningCurve.testAccuracyMean == pin.curve, "level \(pin.level)")
    }
    let branch = results.levels.count > 1 ? results.levels[1].branches["random-reinit"] : nil
    #expect(branch?.hash == pinnedBranchHash)
    #expect(branch?.testAccuracyMean == pinnedBranchAccuracy.final)
    #expect(branch?.learningCurve.testAccuracyMean == pinnedBranchAccuracy.curve)
  }
}
