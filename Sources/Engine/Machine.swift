import Foundation

#if canImport(Darwin)
  import Darwin
#endif

/// The processor this process runs on, for run records.
public enum MachineInfo {
  /// The CPU's marketing name: `model name` of /proc/cpuinfo on Linux,
  /// `machdep.cpu.brand_string` on macOS; "unknown" where neither is readable.
  public static let cpuModel: String = {
    #if os(Linux)
      if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
          if let colon = line.firstIndex(of: ":") {
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
          }
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
