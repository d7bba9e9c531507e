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
#include <utility>
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

constexpr const char* kFormats = "PNG, JPEG or BMP";

using detail::quoted;
using detail::with_commas;

/// stb's reason for the last failure, as " (stb_image: ...)".
std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return std::string(" (stb_image: ") + (r ? r : "unknown error") + ")";
}

/// The format the first bytes announce ("PNG", "JPEG", "BMP", or another stb_image format by
/// name), or "" when they match no signature. Only PNG, JPEG and BMP are passed to stb_image.
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
  if (starts("BM", 2)) return "BMP";
  if (starts("GIF8", 4)) return "GIF";
  if (starts("8BPS", 4)) return "PSD";
  if (starts("#?RADIANCE", 10) || starts("#?RGBE", 6)) return "HDR (Radiance)";
  if (starts("\x53\x80\xf6\x34", 4)) return "PIC (Softimage)";
  if (n >= 2 && h[0] == 'P' && h[1] >= '1' && h[1] <= '7') return "PNM (PBM/PGM/PPM)";
  return "";
}

bool readable_format(const std::string& format) {
  return format == "PNG" || format == "JPEG" || format == "BMP";
}

/// The width and height a PNG, BMP or JPEG header states, read by minidl itself so that a size
/// stb_image would refuse as "too large" is reported as such; {0, 0} when the header is not
/// where the format puts it (stb then reports the damage). A BMP's height is negative for a
/// top-down image: its magnitude is returned.
std::pair<int64_t, int64_t> header_size(const std::string& format,
                                        const std::vector<unsigned char>& b) {
  const size_t n = b.size();
  auto be16 = [&](size_t i) { return i + 2 <= n ? int64_t{b[i]} << 8 | b[i + 1] : -1; };
  auto be32 = [&](size_t i) { return i + 4 <= n ? be16(i) << 16 | be16(i + 2) : -1; };
  auto le16 = [&](size_t i) { return i + 2 <= n ? int64_t{b[i + 1]} << 8 | b[i] : -1; };
  auto le32 = [&](size_t i) {
    return i + 4 <= n
               ? static_cast<int64_t>(static_cast<int32_t>(
                     static_cast<uint32_t>(le16(i + 2)) << 16 | static_cast<uint32_t>(le16(i))))
               : -1;
  };
  if (format == "PNG" && n >= 24 && std::memcmp(b.data() + 12, "IHDR", 4) == 0)
    return {be32(16), be32(20)};
  if (format == "BMP" && n >= 26) {
    const int64_t header = le32(14);
    if (header == 12) return {le16(18), le16(20)};
    const int64_t h = le32(22);
    return {le32(18), h < 0 ? -h : h};
  }
  if (format == "JPEG") {  // the first frame header (SOFn) among the marker segments
    size_t i = 0;
    while (i < n && b[i] == 0xff) ++i;
    ++i;  // SOI
    while (i < n) {
      while (i < n && b[i] != 0xff) ++i;
      while (i < n && b[i] == 0xff) ++i;
      if (i >= n) break;
      const unsigned m = b[i++];
      if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) continue;  // no length
      if (m == 0xd9 || m == 0xda) break;  // EOI, SOS: no frame header before the scan
      if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc)
        return {be16(i + 5), be16(i + 3)};  // length, precision, height, width
      const int64_t length = be16(i);
      if (length < 2) break;
      i += static_cast<size_t>(length);
    }
  }
  return {0, 0};
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

  // The format its signature announces: only PNG, JPEG and BMP go to stb_image (its other
  // decoders are not needed, and some are unsafe: the Radiance HDR reader of Debian's stb_image
  // 2.27 loops forever on a 49-byte file, CVE-2021-42715).
  unsigned char head[16] = {};
  const size_t head_len = std::fread(head, 1, sizeof head, file.get());
  std::rewind(file.get());
  const std::string format = sniff_format(head, head_len);
  if (format.empty()) {
    throw std::runtime_error("image " + quoted(path) +
                             " is not an image minidl can read: " + "expected " + kFormats +
                             " (its first bytes match none of their signatures)");
  }
  if (!readable_format(format)) {
    throw std::runtime_error("image " + quoted(path) + " is in the " + format +
                             " format; minidl reads " + kFormats + " only: convert it first");
  }

  // The first 64 KiB (the whole file for a JPEG, whose frame header may follow large
  // segments, and whose Huffman tables are checked below).
  std::vector<unsigned char> bytes(static_cast<size_t>(
      format == "JPEG" ? st.st_size : std::min<off_t>(st.st_size, off_t{1} << 16)));
  bytes.resize(std::fread(bytes.data(), 1, bytes.size(), file.get()));
  std::rewind(file.get());
  if (format == "JPEG") {  // see jpeg_oversized_huffman_table; stbi_info reads the DHT
    // segments before the frame header, so this comes first
    const std::string problem = jpeg_oversized_huffman_table(bytes);
    if (!problem.empty()) {
      throw std::runtime_error("cannot decode image " + quoted(path) +
                               " as JPEG: the file is damaged (" + problem + ")");
    }
  }
  auto too_large = [&](int64_t width, int64_t height) {
    return std::runtime_error(
        "image " + quoted(path) + " (" + format + ") is too large: " + std::to_string(width) +
        " x " + std::to_string(height) + " pixels (" +
        with_commas(static_cast<uint64_t>(width) * static_cast<uint64_t>(height)) +
        "), more than the " + cap + " minidl decodes: shrink it first");
  };
  if (const auto [hw, hh] = header_size(format, bytes); hw > 0 && hh > 0 && hw * hh > max_pixels) {
    throw too_large(hw, hh);
  }

  // The size from the header only (stbi_info_from_file leaves the file position where it was).
  int w = 0, h = 0, channels_in_file = 0;
  if (!stbi_info_from_file(file.get(), &w, &h, &channels_in_file)) {
    throw std::runtime_error("cannot read image " + quoted(path) + " as " + format +
                             ": its header is damaged" + stb_reason());
  }
  if (format == "BMP" && h < 0 && h != INT32_MIN) h = -h;  // top-down rows: stb_image flips them
  const int64_t pixels = static_cast<int64_t>(w) * static_cast<int64_t>(h);
  if (w <= 0 || h <= 0) {
    throw std::runtime_error("cannot read image " + quoted(path) + " as " + format +
                             ": its header gives an impossible size of " + std::to_string(w) +
                             " x " + std::to_string(h) + " pixels");
  }
  if (pixels > max_pixels) throw too_large(w, h);

  // Decoded in the file's own channel count (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA): asking stb
  // for 3 channels runs its stbi__convert_format, which read past its buffer for a 16-bit PNM
  // (Debian's stb_image 2.27; found by tests/fuzz/fuzz_image, before PNM was refused); this
  // keeps stb's conversions out of every path. Resizing then works on that many channels, and
  // RGB is made from the 32 x 32 result below.
  int n = 0;
  std::unique_ptr<unsigned char, StbiFree> decoded(stbi_load_from_file(file.get(), &w, &h, &n, 0));
  if (!decoded) {
    throw std::runtime_error("cannot decode image " + quoted(path) + " as " + format +
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
