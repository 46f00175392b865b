// LotteryKit's stored numbers for each finding, from runs of `lth reproduce PAPER` on
// Fashion-MNIST (the default data set). Generated: `lth reproduce PAPER --scale quick
// --swift-references` prints this file's entries for one paper from its finished runs;
// `make reproduce` runs all five and rewrites docs/reproduce.md. Never edited by hand.

extension Papers {
  /// Key: `scale/finding id` (default data sets only).
  public static let references: [String: StoredReference] = [
    "quick/lth.matching-density": StoredReference(
      value: 2.8711495116453793, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lth --scale quick"),
    "quick/lth.reinit-below": StoredReference(
      value: 2.096666666666669, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lth --scale quick"),
    "quick/lth.faster-down-to": StoredReference(
      value: nil, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lth --scale quick"),
    "quick/renda.order": StoredReference(
      value: 0.40000000000000036, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce renda --scale quick"),
    "quick/renda.matching-lr-rewind": StoredReference(
      value: 1.1521412471825694, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce renda --scale quick"),
    "quick/renda.matching-weight-rewind": StoredReference(
      value: 1.8005259203606312, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce renda --scale quick"),
    "quick/renda.matching-finetune": StoredReference(
      value: 20.971074380165287, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce renda --scale quick"),
    "quick/renda.matching-order": StoredReference(
      value: 1.1521412471825694, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce renda --scale quick"),
    "quick/lmc.lenet-stable-k0": StoredReference(
      value: 0.7575000000000012, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lmc --scale quick"),
    "quick/lmc.resnet-unstable-k0": StoredReference(
      value: 5.615, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lmc --scale quick"),
    "quick/lmc.resnet-stable-later": StoredReference(
      value: 100.0, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lmc --scale quick"),
    "quick/lmc.imp-matching-iff-stable": StoredReference(
      value: 0.0, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lmc --scale quick"),
    "quick/lmc.random-lenet-stable": StoredReference(
      value: 0.4274999999999987, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lmc --scale quick"),
    "quick/lmc.random-resnet-unstable": StoredReference(
      value: nil, verdict: .movedToFull, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce lmc --scale quick"),
    "quick/pai.beats-random": StoredReference(
      value: -0.9950000000000125, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce pai --scale quick"),
    "quick/pai.below-after-training": StoredReference(
      value: -1.3000000000000123, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce pai --scale quick"),
    "quick/pai.ablations-keep-pai": StoredReference(
      value: -0.714999999999999, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce pai --scale quick"),
    "quick/pai.ablations-hurt-imp": StoredReference(
      value: -2.034999999999987, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce pai --scale quick"),
    "quick/pai.inversion": StoredReference(
      value: -7.399999999999995, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce pai --scale quick"),
    "quick/pai.synflow-no-collapse": StoredReference(
      value: 0.0505952380952381, verdict: .holds, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce pai --scale quick"),
    "quick/scaling.fit-mean": StoredReference(
      value: 6.768575158532084, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce scaling --scale quick"),
    "quick/scaling.fit-std-vs-noise": StoredReference(
      value: 8.034143217650703, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce scaling --scale quick"),
    "quick/scaling.held-out-width": StoredReference(
      value: 10.723527184624654, verdict: .differs, date: "2026-12-07",
      machine: "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), 2 cores",
      command: "lth reproduce scaling --scale quick"),
  ]

  /// The stored number for a finding, when this run uses the default data set.
  public static func reference(_ id: String, scale: ReproductionScale, dataset: String?) -> StoredReference? {
    dataset == nil ? references["\(scale.rawValue)/\(id)"] : nil
  }
}
