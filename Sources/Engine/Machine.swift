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
