// Training's users read and write run files: Storage comes with it.
@_exported import Storage
