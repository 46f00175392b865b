import Engine
import Families
import Foundation
import NN
import TestSupport
import Testing
import Training

/// A small, fast run on synthetic data: 600 training examples, 10 steps per epoch.
let smallRun = [
  "train", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1",
  "--training-steps", "40ep", "--eval-every", "5ep", "--threads", "2", "--quiet",
]

@Suite("Training runs", .serialized, .tags(.endToEnd), .endToEnd)
struct TrainTests {
  @Test("safetensors files parse with an independent reader")
  func safetensorsLayout() throws {
    let net: Network<Float> = try ModelZoo.make("cifar_resnet_8", inputShape: [3, 8, 8])
    net.initialize(seed: 1, weights: .kaimingNormal, batchNorm: .uniform)
    let path = CLI.tempDir() + "/m.safetensors"
    try ModelState.save(net, step: 7, to: path)
    let bytes = [UInt8](FileManager.default.contents(atPath: path)!)
    let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    #expect(n % 8 == 0)
    let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
    let w = header["blocks.0.conv1.weight"] as! [String: Any]
    #expect(w["dtype"] as? String == "F32" && w["shape"] as? [Int] == [16, 16, 3, 3])
    let off = w["data_offsets"] as! [Int]
    let first = bytes[(8 + n + off[0])..<(8 + n + off[0] + 4)].withUnsafeBytes {
      $0.loadUnaligned(as: Float.self)
    }
    #expect(first == net.parameter("blocks.0.conv1.weight")!.value[0])
    let nbt = header["bn.num_batches_tracked"] as! [String: Any]
    #expect(nbt["dtype"] as? String == "I64" && (nbt["shape"] as? [Int]) == [])
    #expect((header["__metadata__"] as! [String: String])["step"] == "7")
    // Round trip into a fresh network.
    let other: Network<Float> = try ModelZoo.make("cifar_resnet_8", inputShape: [3, 8, 8])
    #expect(try ModelState.load(other, from: path) == 7)
    #expect(other.parameters.map { $0.1.value.array } == net.parameters.map { $0.1.value.array })
    #expect(other.buffers.map { $0.1.array } == net.buffers.map { $0.1.array })
    // A truncated file is a one-line error.
    #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes.prefix(bytes.count - 5))))
    #expect(throws: RunError.self) { try ModelState.load(other, from: path) }
  }

  @Test("the same command twice gives identical metrics and model files; JSON summary line")
  func determinism() throws {
    let a = CLI.tempDir()
    let b = CLI.tempDir()
    let ra = try CLI.run(smallRun + ["--output", a, "--json"])
    #expect(ra.status == 0, "\(ra.stderr)")
    let summary =
      try JSONSerialization.jsonObject(with: Data(ra.stdout.split(separator: "\n").last!.utf8))
      as! [String: Any]
    for key in ["run_dir", "test_accuracy", "test_loss", "steps", "seconds"] {
      #expect(summary[key] != nil, "\(key)")
    }
    #expect((summary["test_accuracy"] as! Double) > 0.5)
    #expect(summary["steps"] as? Int == 400)
    // A different thread count, same results.
    var other = smallRun + ["--output", b]
    other[other.firstIndex(of: "--threads")! + 1] = "1"
    #expect(try CLI.run(other).status == 0)
    let da = try CLI.runDir(a)
    let db = try CLI.runDir(b)
    #expect((da as NSString).lastPathComponent == (db as NSString).lastPathComponent)
    #expect(
      try CLI.metricsWithoutSeconds(da + "/metrics.jsonl") == CLI.metricsWithoutSeconds(db + "/metrics.jsonl")
    )
    for f in ["model_final.safetensors", "model_init.safetensors", "checkpoint.safetensors"] {
      #expect(
        FileManager.default.contents(atPath: da + "/" + f)
          == FileManager.default.contents(atPath: db + "/" + f), "\(f)")
    }
    // The CSV has the same rows.
    let csv = try String(contentsOfFile: da + "/metrics.csv", encoding: .utf8).split(separator: "\n")
    #expect(csv.first == "step,epoch,split,loss,accuracy,lr,seconds" && csv.count == 10)
    // hparams.json records version, commit and BLAS.
    let hp =
      try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: da + "/hparams.json")!)
      as! [String: Any]
    let prov = hp["provenance"] as! [String: Any]
    #expect(prov["lotterykit_version"] != nil && prov["blas_core"] != nil)
    // Tests run from a git checkout: the commit must be a real one, not a placeholder.
    let commit = prov["git_commit"] as? String ?? ""
    #expect(commit.count == 40 && commit.allSatisfy(\.isHexDigit), "git_commit \(commit)")
    // Running a finished run again changes nothing and prints the same summary.
    let before = CLI.snapshot(da)
    let again = try CLI.run(smallRun + ["--output", a, "--json"])
    #expect(again.stdout.split(separator: "\n").last == ra.stdout.split(separator: "\n").last)
    #expect(CLI.snapshot(da) == before)
  }

  @Test("SIGKILL at random moments, then rerun: bit-identical to an uninterrupted run")
  func killAndResume() throws {
    let ref = CLI.tempDir()
    let t0 = Date()
    #expect(try CLI.run(smallRun + ["--output", ref]).status == 0)
    let duration = Date().timeIntervalSince(t0)
    let refDir = try CLI.runDir(ref)
    var rng = RandomStream(seed: 99, purpose: "kill-times")
    for trial in 0..<3 {
      let out = try CLI.killAndRerun(kills: 4, duration: duration, rng: &rng, fraction: 0.05...0.95) {
        out, t in
        let r = try CLI.run(smallRun + ["--output", out], killAfter: t)
        if !r.signaled { #expect(r.status == 0, "trial \(trial): \(r.stderr)") }
        return !r.signaled
      }.output
      let dir = try CLI.runDir(out)
      #expect(
        try CLI.metricsWithoutSeconds(dir + "/metrics.jsonl")
          == CLI.metricsWithoutSeconds(refDir + "/metrics.jsonl"))
      for f in ["model_final.safetensors", "checkpoint.safetensors"] {
        #expect(
          FileManager.default.contents(atPath: dir + "/" + f)
            == FileManager.default.contents(atPath: refDir + "/" + f), "trial \(trial) \(f)")
      }
      let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
      #expect(leftovers.isEmpty)
    }
  }
}

@Suite("Bad input to lth train", .serialized, .tags(.endToEnd), .endToEnd)
struct BadInputTests {
  @Test("convolution backends: recorded per layer, hashed when not auto, same bits at 1 and 3 threads")
  func convBackends() throws {
    let run = [
      "train", "--model", "cifar_conv_2", "--dataset", "synthetic", "--subsample-fraction", "0.02",
      "--training-steps", "4it", "--eval-every", "4it", "--quiet", "--json",
    ]
    var dirs: [String: String] = [:]
    for backend in ["auto", "im2col"] {
      var files: [Data?] = []
      for threads in ["1", "3"] {
        let out = CLI.tempDir()
        let r = try CLI.run(run + ["--conv-backend", backend, "--threads", threads, "--output", out])
        #expect(r.status == 0, "\(r.stderr)")
        let s =
          try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8))
          as! [String: Any]
        let names = s["conv_backends"] as! [String: String]
        #expect(names.keys.sorted() == ["conv_layers.0", "conv_layers.1"])
        if backend == "im2col" {
          #expect(names.values.allSatisfy { $0 == "im2col+blas" })
        } else {
          #if os(Linux)
            // Conv-2's second layer (64->64, 3x3 on 32x32): Winograd exactly when oneDNN
            // offers it on this machine.
            let second = ConvGeometry(inChannels: 64, outChannels: 64, kernel: (3, 3), padding: (1, 1))
            #expect(
              names["conv_layers.1"]!.contains("wino")
                == Convolution.winogradAvailable(second, spatial: (32, 32)),
              "\(names) on \(Convolution.isa)")
          #endif
        }
        let dir = try CLI.runDir(out)
        dirs[backend] = (dir as NSString).lastPathComponent
        files.append(FileManager.default.contents(atPath: dir + "/model_final.safetensors"))
        let hpObject =
          try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: dir + "/hparams.json")!)
          as! [String: Any]
        #expect(((hpObject["hparams"] as! [String: Any])["conv_backend"] != nil) == (backend != "auto"))
        let prov = hpObject["provenance"] as! [String: Any]
        #expect(prov["convolution_library"] is String)
        // The run records the backends it planned, and they are the ones it used.
        #expect(prov["conv_backends"] as? [String: String] == names)
      }
      #expect(files[0] != nil && files[0] == files[1], "\(backend): 1 vs 3 threads")
    }
    #expect(dirs["auto"] != dirs["im2col"])
  }

  @Test("no tensor is allocated after the first training step (buffers are planned once)")
  func steadyStateAllocations() throws {
    for model in ["mnist_lenet_300_100", "cifar_conv_2", "cifar_resnet_8"] {
      let r = try CLI.run([
        "bench", "--model", model, "--batch-size", "16", "--steps", "2", "--warmup", "1", "--threads", "2",
        "--json",
      ])
      #expect(r.status == 0, "\(r.stderr)")
      let d = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
      #expect(d["steady_state_tensor_allocations"] as? Int == 0, "\(model)")
    }
  }

  @Test("bad flags: one clear line each, non-zero exit")
  func flags() throws {
    let base = ["train", "--dataset", "synthetic", "--output", CLI.tempDir(), "--quiet"]
    expectOneLineError(try CLI.run(base + ["--model", "cifar_resnet_21"]), "(D - 2) % 6 == 0")
    expectOneLineError(try CLI.run(base + ["--model", "alexnet"]), "known: mnist_lenet_N1_N2")
    expectOneLineError(
      try CLI.run(["train", "--model", "mnist_lenet_10", "--dataset", "imagenet"]), "known: fashion_mnist")
    let m = base + ["--model", "mnist_lenet_10"]
    expectOneLineError(try CLI.run(m + ["--lr", "0"]), "--lr must be positive")
    expectOneLineError(try CLI.run(m + ["--lr=-0.1"]), "--lr must be positive")
    expectOneLineError(try CLI.run(m + ["--batch-size", "0"]), "--batch-size must be positive")
    expectOneLineError(try CLI.run(m + ["--training-steps", "3xx"]), "invalid step '3xx'")
    expectOneLineError(try CLI.run(m + ["--training-steps=-2ep"]), "invalid step '-2ep'")
    expectOneLineError(try CLI.run(m + ["--validation-size", "999999"]), "--validation-size")
    expectOneLineError(try CLI.run(m + ["--lr", "-0.1"]), "Missing value for '--lr <lr>'")
    expectOneLineError(try CLI.run(m + ["--no-such-flag"]), "no-such-flag")
    expectOneLineError(try CLI.run(m + ["--conv-backend", "cudnn"]), "'auto', 'im2col' or 'onednn'")
    expectOneLineError(try CLI.run(["bench", "--conv-backend", "cudnn"]), "'auto', 'im2col' or 'onednn'")
    expectOneLineError(try CLI.run(["bench", "--density", "0"]), "--density must be in (0, 1]")
    expectOneLineError(try CLI.run(["bench", "--density", "1.5"]), "--density must be in (0, 1]")
    let missing = try CLI.run([
      "train", "--model", "mnist_lenet_10", "--dataset", "mnist", "--data-dir", "/nonexistent", "--quiet",
      "--output", CLI.tempDir(),
    ])
    expectOneLineError(missing, "cannot find train-images-idx3-ubyte")
  }

  @Test("an output folder that cannot be written")
  func unwritable() throws {
    let file = CLI.tempDir() + "/plain-file"
    #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
    expectOneLineError(try CLI.run(smallRun + ["--output", file + "/runs"]), "cannot create the run folder")
    expectOneLineError(try CLI.run(smallRun + ["--output", file]), "is not a folder")
  }

  @Test("a full disk during a checkpoint write leaves the finished runs as they were")
  func fullDisk() throws {
    let out = CLI.tempDir()
    #expect(try CLI.run(smallRun + ["--output", out]).status == 0)
    let finished = CLI.snapshot(out)
    // Another run in the same output root, with writes capped at 20 KiB: the first
    // checkpoint (about 100 KiB) cannot be written.
    let r = try CLI.run(smallRun + ["--output", out, "--seed", "5"], shellPrefix: "ulimit -f 20;")
    expectOneLineError(r, "cannot write")
    let after = CLI.snapshot(out)
    for (k, v) in finished { #expect(after[k] == v, "\(k) changed") }
    #expect(!after.keys.contains { $0.contains(".tmp-") })
  }

  @Test("truncated or foreign checkpoints and hparams, and a locked run folder")
  func corruptFiles() throws {
    let out = CLI.tempDir()
    #expect(try CLI.run(smallRun + ["--output", out]).status == 0)
    let dir = try CLI.runDir(out)
    // Unfinished run (no summary) with a truncated checkpoint.
    try FileManager.default.removeItem(atPath: dir + "/summary.json")
    let ck = FileManager.default.contents(atPath: dir + "/checkpoint.safetensors")!
    #expect(
      FileManager.default.createFile(
        atPath: dir + "/checkpoint.safetensors", contents: ck.prefix(ck.count / 2)))
    expectOneLineError(try CLI.run(smallRun + ["--output", out]), "not a valid safetensors file")
    // A checkpoint of another model.
    let other = CLI.tempDir()
    var otherRun = smallRun + ["--output", other]
    otherRun[otherRun.firstIndex(of: "mnist_lenet_64_32")!] = "mnist_lenet_16"
    #expect(try CLI.run(otherRun).status == 0)
    try FileManager.default.removeItem(atPath: dir + "/checkpoint.safetensors")
    try FileManager.default.copyItem(
      atPath: try CLI.runDir(other) + "/checkpoint.safetensors", toPath: dir + "/checkpoint.safetensors")
    expectOneLineError(try CLI.run(smallRun + ["--output", out]), "holds a mnist_lenet_16 model")
    // A truncated hparams.json.
    let hp = FileManager.default.contents(atPath: dir + "/hparams.json")!
    #expect(FileManager.default.createFile(atPath: dir + "/hparams.json", contents: hp.prefix(40)))
    expectOneLineError(try CLI.run(smallRun + ["--output", out]), "hparams.json is unreadable or truncated")
    #expect(FileManager.default.createFile(atPath: dir + "/hparams.json", contents: hp))
    // A run folder locked by another process.
    let lock = try FileLock(dir + "/.lock", what: "test")
    expectOneLineError(try CLI.run(smallRun + ["--output", out]), "in use by another lth process")
    withExtendedLifetime(lock) {}
  }

  @Test("a diverging run stops naming the step and keeps the last good checkpoint")
  func diverging() throws {
    let out = CLI.tempDir()
    let r = try CLI.run(smallRun + ["--output", out, "--optimizer", "sgd", "--lr", "1e30"])
    expectOneLineError(r, "at step")
    #expect(r.stderr.contains("diverged"))
    let dir = try CLI.runDir(out)
    #expect(FileManager.default.fileExists(atPath: dir + "/checkpoint.safetensors"))
    #expect(!FileManager.default.fileExists(atPath: dir + "/summary.json"))
  }
}

@Suite("Locks")
struct LockTests {
  /// A child process (older builds started `git` for provenance while holding a run's lock) must not
  /// inherit the lock: otherwise a killed lth leaves its run locked until the child exits.
  @Test("a run lock is not inherited by child processes")
  func notInherited() throws {
    let path = CLI.tempDir() + "/lock"
    func lockIsFree() throws -> Bool {
      let probe = Process()
      probe.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
      probe.arguments = ["-n", path, "true"]
      try probe.run()
      probe.waitUntilExit()
      return probe.terminationStatus == 0
    }
    var lock: FileLock? = try FileLock(path, what: "test run")
    #expect(lock != nil)
    #expect(try !lockIsFree(), "the probe must see a held lock (else this test proves nothing)")
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/bin/sleep")
    child.arguments = ["3"]
    try child.run()
    defer { child.terminate() }
    lock = nil  // released by this process; only an inherited descriptor could still hold it
    #expect(try lockIsFree(), "the lock is still held while the child runs")
  }
}
