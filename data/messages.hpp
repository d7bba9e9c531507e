// minidl — small helpers for the data readers' error messages (data/cifar10.cpp, data/image.cpp).
#pragma once

#include <cstdint>
#include <string>

#include "core/system.hpp"

namespace minidl::data::detail {

/// 30730000 -> "30,730,000" (core/system.hpp's with_thousands).
inline std::string with_commas(uint64_t v) { return with_thousands(static_cast<int64_t>(v)); }

/// A path in double quotes, as every reader's message names its file.
inline std::string quoted(const std::string& path) { return "\"" + path + "\""; }

}  // namespace minidl::data::detail
