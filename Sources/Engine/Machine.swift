import Foundation

#if canImport(Darwin)
  import Darwin
#endif

/// The processor this process runs on, for run records.
public enum MachineInfo {
  /// The default thread count: `SLURM_CPUS_PER_TASK` inside a Slurm job, else the CPUs this
  /// process may run on (its affinity mask, `Cpus_allowed_list` in /proc/self/status, so
  /// `taskset` and cgroup cpusets count), else the machine's count.
  public static var defaultThreads: Int {
    if let s = ProcessInfo.processInfo.environment["SLURM_CPUS_PER_TASK"], let n = Int(s), n > 0 { return n }
    if let n = allowedCPUs() { return n }
    return ProcessInfo.processInfo.activeProcessorCount
  }

  /// The number of CPUs in this process's affinity mask (nil where /proc is missing).
  public static func allowedCPUs(status: String? = nil) -> Int? {
    guard let text = status ?? (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) else {
      return nil
    }
    for line in text.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
      var count = 0
      for part in line.dropFirst("Cpus_allowed_list:".count).split(separator: ",") {
        let bounds = part.trimmingCharacters(in: .whitespaces).split(separator: "-").compactMap { Int($0) }
        if bounds.count == 1 {
          count += 1
        } else if bounds.count == 2, bounds[1] >= bounds[0] {
          count += bounds[1] - bounds[0] + 1
        }
      }
      return count > 0 ? count : nil
    }
    return nil
  }

  /// The CPU's marketing name: `model name` of /proc/cpuinfo on Linux,
  /// `machdep.cpu.brand_string` on macOS; "unknown" where neither is readable.
  public static let cpuModel: String = {
    #if os(Linux)
      // Virtual machines often report a bare "AMD EPYC": family, model and stepping tell
      // the generation apart (family 25 model 17 is Zen 4, with AVX-512).
      if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
          if line.isEmpty { break }  // the first processor is enough
          guard let colon = line.firstIndex(of: ":") else { continue }
          let key = line[..<colon].trimmingCharacters(in: .whitespaces)
          fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if let name = fields["model name"] {
          guard let f = fields["cpu family"], let m = fields["model"] else { return name }
          return "\(name) (family \(f), model \(m)\(fields["stepping"].map { ", stepping \($0)" } ?? ""))"
        }
      }
    #elseif canImport(Darwin)
      var size = 0
      if sysctlbyname("machdep.cpu.brand_string", nil, &size, nil, 0) == 0, size > 0 {
        var buf = [CChar](repeating: 0, count: size)
        if sysctlbyname("machdep.cpu.brand_string", &buf, &size, nil, 0) == 0 { return String(cString: buf) }
      }
    #endif
    return "unknown"
  }()
}
