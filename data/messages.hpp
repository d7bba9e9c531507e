// minidl — small helpers for the data readers' error messages (data/cifar10.cpp, data/image.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace minidl::data::detail {

/// 30730000 -> "30,730,000".
inline std::string with_commas(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

/// A path in double quotes, as every reader's message names its file.
inline std::string quoted(const std::string& path) { return "\"" + path + "\""; }

}  // namespace minidl::data::detail
