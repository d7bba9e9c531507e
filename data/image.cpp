// minidl — load_image (see image.hpp). Uses the stb implementations compiled into Debian's
// libstb.so, so STB_IMAGE_IMPLEMENTATION / STB_IMAGE_RESIZE_IMPLEMENTATION must NOT be defined
// here (that would duplicate the library's symbols).
#include "data/image.hpp"
#include "data/messages.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

namespace minidl::data {

namespace fs = std::filesystem;

namespace {

struct StbiFree {
  void operator()(unsigned char* p) const { stbi_image_free(p); }
};

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};

constexpr const char* kFormats = "PNG, JPEG, BMP, GIF, TGA, PSD, PIC, PNM (P5/P6) or HDR";

using detail::quoted;
using detail::with_commas;

/// stb's reason for the last failure, as " (stb_image: ...)".
std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return std::string(" (stb_image: ") + (r ? r : "unknown error") + ")";
}

/// The format the first bytes announce ("PNG", "JPEG", ...), or "" when they match none of the
/// formats with a signature (TGA has none). Only used to word the messages.
std::string sniff_format(const unsigned char* h, size_t n) {
  auto starts = [&](const char* magic, size_t len) {
    return n >= len && std::memcmp(h, magic, len) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n", 8)) return "PNG";
  if (n >= 2 && h[0] == 0xff) {  // as stb's JPEG test: 0xFF, any fill 0xFFs, then SOI (0xD8)
    size_t i = 0;
    while (i < n && h[i] == 0xff) ++i;
    if (i < n && h[i] == 0xd8) return "JPEG";
  }
  if (starts("GIF8", 4)) return "GIF";
  if (starts("BM", 2)) return "BMP";
  if (starts("8BPS", 4)) return "PSD";
  if (starts("#?RADIANCE", 10) || starts("#?RGBE", 6)) return "HDR";
  if (starts("\x53\x80\xf6\x34", 4)) return "PIC";
  if (starts("P5", 2) || starts("P6", 2)) return "PNM";
  return "";
}

/// Guards against a heap overflow in the JPEG decoder of Debian's stb_image (2.27, snapshot
/// 2022-09-08): a DHT segment whose 16 code counts sum to more than 256 makes
/// stbi__build_huffman and stbi__process_marker write past the 257-byte size[] and 256-byte
/// values[] arrays of the Huffman table into the rest of the decoder's state (upstream added
/// the check in stb_image 2.28; found by tests/fuzz/fuzz_image). Walks the marker segments of a
/// JPEG the way stb reads them (lengths of segments, entropy-coded data up to the next marker
/// other than a stuffed 0xFF00 or RSTn, bytes past the end read as 0 like stb), so it sees every
/// DHT table stb could build, and returns a description of the first table with more than 256
/// codes, or "" when there is none.
std::string jpeg_oversized_huffman_table(const std::vector<unsigned char>& b) {
  const size_t n = b.size();
  auto at = [&](size_t i) -> unsigned { return i < n ? b[i] : 0u; };
  // stb's JPEG test: 0xFF, any fill 0xFFs, SOI (0xD8). Anything else never reaches its decoder.
  size_t i = 0;
  if (n == 0 || b[0] != 0xff) return "";
  while (i < n && b[i] == 0xff) ++i;
  if (i >= n || b[i] != 0xd8) return "";
  ++i;
  bool entropy = false;  // scanning entropy-coded data after an SOS header
  while (i < n) {
    // The next marker: a 0xFF, any fill 0xFFs, then the marker byte.
    while (i < n && b[i] != 0xff) ++i;
    while (i < n && b[i] == 0xff) ++i;
    if (i >= n) break;
    const unsigned m = b[i++];
    if (m == 0x00 || (m >= 0xd0 && m <= 0xd7)) {  // stuffed 0xFF or RSTn: no length
      if (!entropy) break;                        // stb stops at these outside a scan
      continue;
    }
    if (m == 0xd9) break;                  // EOI
    if (m == 0x01 || m == 0xd8) continue;  // TEM, SOI: no length
    entropy = false;
    const size_t length = at(i) << 8 | at(i + 1);
    if (m == 0xc4) {  // DHT: tables of (class/id byte, 16 counts, the values)
      size_t p = i + 2;
      int64_t left = static_cast<int64_t>(length) - 2;
      while (left > 0) {
        size_t codes = 0;
        for (size_t k = 0; k < 16; ++k) codes += at(p + 1 + k);
        if (codes > 256) {
          return "a Huffman table (DHT segment at byte " + std::to_string(i - 2) + ") declares " +
                 std::to_string(codes) + " codes, at most 256 are possible";
        }
        p += 17 + codes;
        left -= static_cast<int64_t>(17 + codes);
      }
    }
    if (m == 0xda) entropy = true;  // SOS: its header, then entropy-coded data
    i += std::max<size_t>(length, 2);
  }
  return "";
}

}  // namespace

Tensor load_image(const std::string& path, const Normalization& norm, int64_t max_pixels) {
  if (max_pixels < 1) {
    throw std::invalid_argument("load_image: max_pixels must be >= 1, got " +
                                std::to_string(max_pixels));
  }
  const std::string cap = with_commas(static_cast<uint64_t>(max_pixels)) + " pixels" +
                          (max_pixels == kMaxImagePixels ? " (e.g. 8192 x 8192)" : "");
  // The path: a regular file (fopen of a FIFO would block, a directory opens on Linux).
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    throw std::runtime_error("cannot open image " + quoted(path) + ": " +
                             (ec ? ec.message() : std::string(std::strerror(ENOENT))));
  }
  if (fs::is_directory(status)) {
    throw std::runtime_error("image " + quoted(path) + " is a directory, expected an image file (" +
                             kFormats + ")");
  }
  if (!fs::is_regular_file(status)) {
    throw std::runtime_error("image " + quoted(path) +
                             " is not a regular file (a device, socket or pipe), expected an "
                             "image file (" +
                             kFormats + ")");
  }
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    const int err = errno;
    throw std::runtime_error("cannot open image " + quoted(path) + ": " +
                             (err ? std::strerror(err) : "unknown error"));
  }
  struct stat st {};
  if (::fstat(::fileno(file.get()), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw std::runtime_error("cannot open image " + quoted(path) + ": not a regular file");
  }
  if (st.st_size == 0) {
    throw std::runtime_error("image " + quoted(path) +
                             " is empty (0 bytes); expected an image file (" + kFormats + ")");
  }

  // The format its signature announces, for the messages.
  unsigned char head[16] = {};
  const size_t head_len = std::fread(head, 1, sizeof head, file.get());
  std::rewind(file.get());
  const std::string format = sniff_format(head, head_len);
  const std::string as_format =
      format.empty() ? "an image (" + std::string(kFormats) + ")" : format;

  if (head_len > 0 && head[0] == 0xff) {  // a JPEG to stb: see jpeg_oversized_huffman_table;
    // stbi_info reads the DHT segments before the frame header, so this comes first
    std::vector<unsigned char> bytes(static_cast<size_t>(st.st_size));
    const size_t got = std::fread(bytes.data(), 1, bytes.size(), file.get());
    bytes.resize(got);
    std::rewind(file.get());
    const std::string problem = jpeg_oversized_huffman_table(bytes);
    if (!problem.empty()) {
      throw std::runtime_error("cannot decode image " + quoted(path) +
                               " as JPEG: the file is damaged (" + problem + ")");
    }
  }

  // The size from the header only (stbi_info_from_file leaves the file position where it was).
  int w = 0, h = 0, channels_in_file = 0;
  if (!stbi_info_from_file(file.get(), &w, &h, &channels_in_file)) {
    const char* r = stbi_failure_reason();
    if (r && std::strcmp(r, "too large") == 0) {
      throw std::runtime_error("image " + quoted(path) +
                               (format.empty() ? "" : " (" + format + ")") +
                               " is too large to decode" + stb_reason() + "; minidl decodes " +
                               "images of at most " + cap + ": shrink it first");
    }
    if (format.empty()) {
      throw std::runtime_error("image " + quoted(path) + " is not an image minidl can read: " +
                               "expected " + kFormats + stb_reason());
    }
    throw std::runtime_error("cannot read image " + quoted(path) + " as " + format +
                             ": its header is damaged" + stb_reason());
  }
  // Debian's stb_image 2.27 returns the 16-bit samples of a PNM in the wrong byte order (it
  // keeps the low byte of each big-endian sample): refused rather than read as noise.
  if (format == "PNM" && stbi_is_16_bit_from_file(file.get())) {
    throw std::runtime_error("cannot decode image " + quoted(path) +
                             " as PNM: 16-bit samples (maxval above 255) are not supported (the "
                             "stb_image minidl uses reads them in the wrong byte order); "
                             "convert it to 8 bits or to PNG");
  }
  const int64_t pixels = static_cast<int64_t>(w) * static_cast<int64_t>(h);
  if (w <= 0 || h <= 0) {
    throw std::runtime_error("cannot read image " + quoted(path) + " as " + as_format +
                             ": its header gives an impossible size of " + std::to_string(w) +
                             " x " + std::to_string(h) + " pixels");
  }
  if (pixels > max_pixels) {
    throw std::runtime_error("image " + quoted(path) + (format.empty() ? "" : " (" + format + ")") +
                             " is " + std::to_string(w) + " x " + std::to_string(h) + " pixels (" +
                             with_commas(static_cast<uint64_t>(pixels)) + "), more than the " +
                             cap + " minidl decodes: shrink it first");
  }

  // Decoded in the file's own channel count (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA): asking stb
  // for 3 channels runs its stbi__convert_format, which for a 16-bit PNM (P5/P6 with maxval >
  // 255) converts as if the samples had 8 bits and then reads past the buffer in
  // stbi__convert_16_to_8 (Debian's stb_image 2.27; found by tests/fuzz/fuzz_image; 16-bit PNM
  // is refused above anyway, this keeps stb's conversions out of every path). Resizing then
  // works on that many channels, and RGB is made from the 32 x 32 result below.
  int n = 0;
  std::unique_ptr<unsigned char, StbiFree> decoded(stbi_load_from_file(file.get(), &w, &h, &n, 0));
  if (!decoded) {
    throw std::runtime_error("cannot decode image " + quoted(path) + " as " + as_format +
                             ": the file is damaged or truncated" + stb_reason());
  }
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > max_pixels || n < 1 || n > 4) {
    throw std::runtime_error("image " + quoted(path) + " decoded to " + std::to_string(w) + " x " +
                             std::to_string(h) + " pixels of " + std::to_string(n) +
                             " channels, not what its header announced");
  }
  const int side = static_cast<int>(kImageSide);

  // 32 x 32 pixels of n interleaved channels (HWC).
  std::vector<unsigned char> small(static_cast<size_t>(kPlaneBytes * n));
  if (w == side && h == side) {
    std::copy(decoded.get(), decoded.get() + small.size(), small.begin());
  } else if (!stbir_resize_uint8(decoded.get(), w, h, 0, small.data(), side, side, 0, n)) {
    throw std::runtime_error("cannot resize image " + quoted(path) + " from " + std::to_string(w) +
                             " x " + std::to_string(h) + " to 32 x 32 (stb_image_resize failed)");
  }

  // HWC -> CHW RGB as stb converts: gray (and gray+alpha) is replicated into R, G and B, alpha is
  // dropped. Then normalize like the dataset.
  std::vector<uint8_t> chw(static_cast<size_t>(kImageBytes));
  for (int64_t i = 0; i < kPlaneBytes; ++i) {
    const unsigned char* px = small.data() + i * n;
    for (int64_t c = 0; c < kChannels; ++c) chw[c * kPlaneBytes + i] = px[n >= 3 ? c : 0];
  }
  Tensor out(Shape{1, kChannels, kImageSide, kImageSide});
  normalize_image(chw.data(), out.mutable_data(), norm);
  return out;
}

}  // namespace minidl::data
