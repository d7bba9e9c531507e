#include "core/system.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace minidl {

namespace {
/// The first number of a one-line file (a cgroup's memory.max holds "max" when unlimited).
int64_t first_number(const std::string& path) {
  std::ifstream in(path);
  long long v = -1;
  if (!(in >> v)) return -1;
  return v;
}
}  // namespace

int64_t available_memory_bytes() {
  int64_t available = -1;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream fields(line.substr(13));
      long long kib = 0;
      if (fields >> kib) available = static_cast<int64_t>(kib) * 1024;
      break;
    }
  }
  const int64_t limit = first_number("/sys/fs/cgroup/memory.max");
  const int64_t used = first_number("/sys/fs/cgroup/memory.current");
  if (limit > 0 && used >= 0) {
    const int64_t left = limit > used ? limit - used : 0;
    if (available < 0 || left < available) available = left;
  }
  return available;
}

std::string with_thousands(int64_t v) {
  const std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out = v < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string gib_text(int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f GiB", static_cast<double>(bytes) / (1u << 30));
  return b;
}

std::string bytes_text(int64_t bytes) {
  return gib_text(bytes) + " (" + with_thousands(bytes) + " bytes)";
}

}  // namespace minidl
