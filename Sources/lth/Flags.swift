import ArgumentParser
import Analysis
import Engine
import Experiments
import Families
import NN
import Pruning

// Flag names and help come from the hyperparameter declarations (``HyperparameterKey``),
// so a flag, its JSON key and its help text cannot drift apart.
extension NameSpecification {
  static func key<K: HyperparameterKey>(_ k: K) -> NameSpecification { .customLong(k.flagName!) }
}

extension ArgumentHelp {
  /// The key's help and where its default comes from; a fixed default is the flag's initial
  /// value, which the parser prints itself.
  static func key<K: HyperparameterKey>(_ k: K) -> ArgumentHelp {
    if case .value = k.defaultSource { return ArgumentHelp(k.help) }
    return ArgumentHelp(k.fullHelp)
  }
}

// Closed value sets parse as their enums: a bad value is refused with the list of good ones.
extension Recipe.OptimizerKind: ExpressibleByArgument {}
extension LearningRateSchedule.Kind: ExpressibleByArgument {}
extension Initializer: ExpressibleByArgument {}
extension BatchNormInit: ExpressibleByArgument {}
extension ConvBackendPolicy: ExpressibleByArgument {}
extension SparseKernelPolicy: ExpressibleByArgument {}
extension RetrainMode: ExpressibleByArgument {}
extension PruningPolicy.Strategy: ExpressibleByArgument {}
extension Allocation: ExpressibleByArgument {}
extension BatchNormMode: ExpressibleByArgument {}
