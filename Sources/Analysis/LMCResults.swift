import Experiments
import Foundation
import Training

/// `lth results LMC_RUN`: instability against the spawn step k, mean ± sample standard
/// deviation over every (replicate, pair) curve, and the children's final test accuracy.
public enum LMCResults {
  static func mean(_ x: [Double]) -> Double? { Results.mean(x) }
  static func std(_ x: [Double]) -> Double? { Results.std(x) }

  public static func collect(_ root: String) throws -> [String: Any] {
    let fm = FileManager.default
    guard fm.fileExists(atPath: RunFile.hparams.path(in: root)) else {
      throw RunError("\(root) is not an lmc run folder (no \(RunFile.hparams.rawValue))")
    }
    var byK: [Int: (curves: [[String: Any]], endpoints: [Double], endpointReplicates: [Int])] = [:]
    var unfinished: [[String: Any]] = []
    let reps = (try fm.contentsOfDirectory(atPath: root)).filter { $0.hasPrefix("replicate_") }.sorted()
    for rep in reps {
      for sp in (try fm.contentsOfDirectory(atPath: root + "/" + rep)).filter({ $0.hasPrefix("spawn_") }) {
        guard let k = Int(sp.dropFirst("spawn_".count)) else { continue }
        let dir = "\(root)/\(rep)/\(sp)"
        guard let bytes = try? AtomicFile.read(RunFile.interpolation.path(in: dir)) else {
          unfinished.append(["replicate": Int(rep.dropFirst("replicate_".count)) ?? -1, "k": k])
          continue
        }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
          let curves = obj["curves"] as? [[String: Any]]
        else { throw RunError("\(RunFile.interpolation.path(in: dir)) is unreadable") }
        var entry = byK[k] ?? ([], [], [])
        entry.curves += curves
        for c in (try fm.contentsOfDirectory(atPath: dir)).filter({ $0.hasPrefix("child_") }).sorted() {
          if let s = try TrainSummary.read(in: dir + "/" + c) {
            entry.endpoints.append(s.testAccuracy)
            entry.endpointReplicates.append(Int(rep.dropFirst("replicate_".count)) ?? -1)
          }
        }
        byK[k] = entry
      }
    }
    var rows: [[String: Any]] = []
    for k in byK.keys.sorted() {
      let (curves, endpoints, endpointReplicates) = byK[k]!
      func values(_ key: String) -> [Double] { curves.compactMap { $0[key] as? Double } }
      // The mean path over every curve (all curves of a run share the alpha grid).
      let alpha = curves.first?["alpha"] as? [Double] ?? []
      func path(_ key: String) -> (mean: [Double], std: [Any]) {
        let all = curves.compactMap { $0[key] as? [Double] }.filter { $0.count == alpha.count }
        guard !all.isEmpty else { return ([], []) }
        return (
          alpha.indices.map { i in mean(all.map { $0[i] })! },
          alpha.indices.map { i -> Any in std(all.map { $0[i] }) ?? NSNull() }
        )
      }
      let (testMean, testStd) = path("test_error")
      let (trainMean, trainStd) = path("train_error")
      rows.append([
        "alpha": alpha, "test_error_mean": testMean, "test_error_std": testStd,
        "train_error_mean": trainMean, "train_error_std": trainStd,
        "endpoint_test_accuracy_values": endpoints, "endpoint_replicates": endpointReplicates,
        "k": k,
        "test_error_barrier_mean": mean(values("test_error_barrier")) ?? NSNull(),
        "test_error_barrier_std": std(values("test_error_barrier")) ?? NSNull(),
        "train_error_barrier_mean": mean(values("train_error_barrier")) ?? NSNull(),
        "train_error_barrier_std": std(values("train_error_barrier")) ?? NSNull(),
        "test_loss_barrier_mean": mean(values("test_loss_barrier")) ?? NSNull(),
        "endpoint_test_accuracy_mean": mean(endpoints) ?? NSNull(),
        "endpoint_test_accuracy_std": std(endpoints) ?? NSNull(),
        "curves": curves.map { c in
          [
            "replicate": c["replicate"] ?? NSNull(), "pair": c["pair"] ?? NSNull(), "alpha": c["alpha"] ?? [],
            "test_error": c["test_error"] ?? [], "test_loss": c["test_loss"] ?? [],
            "train_error": c["train_error"] ?? [], "train_loss": c["train_loss"] ?? [],
            "test_error_barrier": c["test_error_barrier"] ?? NSNull(),
            "train_error_barrier": c["train_error_barrier"] ?? NSNull(),
            "test_loss_barrier": c["test_loss_barrier"] ?? NSNull(),
          ] as [String: Any]
        },
      ])
    }
    let stored =
      try? JSONSerialization.jsonObject(with: Data(try AtomicFile.read(RunFile.hparams.path(in: root))))
      as? [String: Any]
    let h = stored?["hparams"] as? [String: Any]
    var out: [String: Any] = [
      "run_dir": root, "kind": "lmc", "bn": h?["bn"] as? String ?? "?", "spawn_steps": rows,
      "mask_run": h?["mask_run"] ?? NSNull(), "mask_level": h?["mask_level"] ?? NSNull(),
      "random_mask": h?["random_mask"] ?? false,
      "unfinished": unfinished.sorted {
        ($0["replicate"] as! Int, $0["k"] as! Int) < ($1["replicate"] as! Int, $1["k"] as! Int)
      },
      "replicates_present": reps.compactMap { Int($0.dropFirst("replicate_".count)) }.sorted(),
    ]
    for (key, value) in RunStore.record(of: root) { out[key] = value }
    return out
  }

  static func pm(_ o: [String: Any], _ key: String, scale: Double = 100, digits: Int = 2) -> String {
    guard let m = o[key + "_mean"] as? Double else { return "-" }
    let f = "%.\(digits)f"
    if let s = o[key + "_std"] as? Double {
      return String(format: f, m * scale) + " ± " + String(format: f, s * scale)
    }
    return String(format: f, m * scale)
  }

  public static func table(_ obj: [String: Any]) -> String {
    let rows = obj["spawn_steps"] as? [[String: Any]] ?? []
    var lines = [
      "batch norm: \(obj["bn"] ?? "?") (running statistics \(obj["bn"] as? String == "recompute" ? "re-estimated at every point" : "interpolated"))"
    ]
    if let run = obj["mask_run"] as? String {
      lines.append(
        "subnetwork: \(obj["random_mask"] as? Bool == true ? "random mask with the per-tensor counts of" : "mask of") \(run) level \(obj["mask_level"] ?? "?"), rewound to k"
      )
    }
    let header = [
      "k", "test error barrier %", "train error barrier %", "test loss barrier", "endpoint test acc %",
      "curves",
    ]
    var cells: [[String]] = []
    for r in rows {
      cells.append([
        "\(r["k"]!)", pm(r, "test_error_barrier"), pm(r, "train_error_barrier"),
        (r["test_loss_barrier_mean"] as? Double).map { String(format: "%.4f", $0) } ?? "-",
        pm(r, "endpoint_test_accuracy"), "\((r["curves"] as? [Any])?.count ?? 0)",
      ])
    }
    lines += Results.grid(header, cells)
    return lines.joined(separator: "\n")
  }
}
