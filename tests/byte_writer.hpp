// minidl tests — writing crafted binary files: big-endian integers and PNG chunks (used by
// tests/test_bad_input_data.cpp and tests/fuzz/make_seed_corpus.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace minidl::testing {

using Bytes = std::vector<uint8_t>;

/// Appends `v` as 4 big-endian bytes (PNG's integers).
inline void be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

/// Appends a PNG chunk: length, 4-byte type, data, CRC-32 of type and data (ISO 3309, as the
/// PNG specification, section 5.3).
inline void png_chunk(Bytes& b, const char* type, const Bytes& data) {
  be32(b, static_cast<uint32_t>(data.size()));
  Bytes typed(type, type + 4);
  typed.insert(typed.end(), data.begin(), data.end());
  uint32_t crc = 0xffffffffu;
  for (uint8_t byte : typed) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  b.insert(b.end(), typed.begin(), typed.end());
  be32(b, crc ^ 0xffffffffu);
}

}  // namespace minidl::testing
