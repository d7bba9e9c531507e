// minidl — what the machine can hold.
#pragma once

#include <cstdint>
#include <string>

namespace minidl {

/// Bytes of memory this process can still take without swapping: /proc/meminfo's MemAvailable,
/// or less when a cgroup (v2) limit leaves less (memory.max - memory.current); -1 when neither
/// can be read. Never throws.
int64_t available_memory_bytes();

/// A byte count for messages: "1.5 GiB (1,610,612,736 bytes)", and its first part alone.
/// Never throw.
std::string bytes_text(int64_t bytes);
std::string gib_text(int64_t bytes);

/// 1234567 -> "1,234,567". Never throws.
std::string with_thousands(int64_t v);

}  // namespace minidl
