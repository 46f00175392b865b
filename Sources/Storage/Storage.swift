/// # Storage: files on disk
///
/// Owns how LotteryKit writes and reads files: safetensors (``Safetensors``), atomic
/// writes (``AtomicFile``), folder locks (``FileLock``), the error of a run that cannot go
/// on (``RunError``), and the run store's names (``RunFile``, ``RunLayout``): every folder
/// and file name of a run folder is spelled here and nowhere else. Above ``Engine``, below
/// everything that saves or loads (NN's users, Training, Pruning, Experiments, Cluster).
