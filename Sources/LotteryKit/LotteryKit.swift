/// # LotteryKit
///
/// The umbrella module: `import LotteryKit` brings every library module, in the order
/// their arrows point: ``Engine`` (tensors, kernels) -> ``NN`` (layers, models, optimizers)
/// -> ``Datasets`` -> ``Storage`` (files, run-store names) -> ``Training`` (the loop and its
/// events) -> ``Pruning`` -> ``Families`` (model families) -> ``Experiments`` (hyperparameters, run store, experiment kinds)
/// -> ``Analysis`` -> ``Reports`` -> ``Cluster``.
@_exported import Analysis
@_exported import Cluster
@_exported import Datasets
@_exported import Engine
@_exported import Experiments
@_exported import Families
@_exported import NN
@_exported import Pruning
@_exported import Reports
@_exported import Storage
@_exported import Training
