import Datasets
import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing
import Training

@Suite("Sparse kernels across a resumed run")
struct SparseResumeTests {
  @Test("a run records its sparse kernels when it starts; resumed with other choices, it says so")
  func resumeWithOtherKernels() throws {
    let dir = CLI.tempDir()
    let shape = [1, 12, 12]
    let data = Synthetic.make(count: 120, shape: shape, classes: 10, seed: 9)
    func trainer(lastStep: Int) throws -> Trainer {
      let net: Network<Float> = try ModelZoo.make("mnist_lenet_80_40", inputShape: shape, classes: 10)
      net.initialize(seed: 3, weights: .kaimingNormal)
      var r = RandomStream(seed: 4, purpose: "resume-mask")
      for (_, p) in net.prunableParameters {
        p.mask = Tensor(p.value.array.map { _ in r.uniform() < 0.05 ? 1 : 0 }, shape: p.value.shape)
      }
      net.sparseKernels = .on
      return try Trainer(
        network: net, optimizer: try Adam(net.parameters, learningRate: 1e-3),
        loader: try BatchLoader(dataset: data, batchSize: 20, seed: 1, augment: false),
        evalSets: [("test", data)],
        firstStep: 0, lastStep: lastStep, evalEvery: 3, learningRate: { _ in 1e-3 }, directory: dir,
        progress: .quiet)
    }
    let first = try trainer(lastStep: 6)
    try first.run()
    #expect(
      first.sparseKernels == ["fc": "sparse-csr", "fc_layers.0": "sparse-csr", "fc_layers.1": "sparse-csr"])
    #expect(first.sparseKernelChanges.isEmpty)
    let recorded = try String(contentsOfFile: dir + "/sparse_kernels.json", encoding: .utf8)
    #expect(recorded.contains("\"fc_layers.0\":\"sparse-csr\""))
    // The same run continued where the record says dense (another machine's rule).
    try recorded.replacingOccurrences(of: "sparse-csr", with: "dense").write(
      toFile: dir + "/sparse_kernels.json", atomically: true, encoding: .utf8)
    let resumed = try trainer(lastStep: 9)
    try resumed.run()
    // A run from before sparse kernels has no record: resumed, it counts as dense.
    try FileManager.default.removeItem(atPath: dir + "/sparse_kernels.json")
    let old = try trainer(lastStep: 12)
    try old.run()
    #expect(old.sparseKernelChanges.count == 3)
    #expect(try String(contentsOfFile: dir + "/sparse_kernels.json", encoding: .utf8).contains("dense"))
    #expect(
      resumed.sparseKernelChanges == [
        "fc dense -> sparse-csr", "fc_layers.0 dense -> sparse-csr", "fc_layers.1 dense -> sparse-csr",
      ])
  }
}
