// minidl — load_image (see image.hpp). Uses the stb implementations compiled into Debian's
// libstb.so, so STB_IMAGE_IMPLEMENTATION / STB_IMAGE_RESIZE_IMPLEMENTATION must NOT be defined
// here (that would duplicate the library's symbols).
#include "data/image.hpp"

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

std::string quoted(const std::string& path) { return "\"" + path + "\""; }

/// 67108864 -> "67,108,864".
std::string with_commas(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

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
  if (starts("\xff\xd8\xff", 3)) return "JPEG";
  if (starts("GIF8", 4)) return "GIF";
  if (starts("BM", 2)) return "BMP";
  if (starts("8BPS", 4)) return "PSD";
  if (starts("#?RADIANCE", 10) || starts("#?RGBE", 6)) return "HDR";
  if (starts("\x53\x80\xf6\x34", 4)) return "PIC";
  if (starts("P5", 2) || starts("P6", 2)) return "PNM";
  return "";
}

}  // namespace

Tensor load_image(const std::string& path, const Normalization& norm) {
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
                             "image file (" + kFormats + ")");
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
    throw std::runtime_error("image " + quoted(path) + " is empty (0 bytes); expected an image file (" +
                             kFormats + ")");
  }

  // The format its signature announces, for the messages.
  unsigned char head[16] = {};
  const size_t head_len = std::fread(head, 1, sizeof head, file.get());
  std::rewind(file.get());
  const std::string format = sniff_format(head, head_len);
  const std::string as_format = format.empty() ? "an image (" + std::string(kFormats) + ")"
                                               : format;

  // The size from the header only (stbi_info_from_file leaves the file position where it was).
  int w = 0, h = 0, channels_in_file = 0;
  if (!stbi_info_from_file(file.get(), &w, &h, &channels_in_file)) {
    const char* r = stbi_failure_reason();
    if (r && std::strcmp(r, "too large") == 0) {
      throw std::runtime_error("image " + quoted(path) + (format.empty() ? "" : " (" + format + ")") +
                               " is too large to decode" + stb_reason() + "; minidl decodes " +
                               "images of at most " + with_commas(kMaxImagePixels) +
                               " pixels (e.g. 8192 x 8192): shrink it first");
    }
    if (format.empty()) {
      throw std::runtime_error("image " + quoted(path) + " is not an image minidl can read: " +
                               "expected " + kFormats + stb_reason());
    }
    throw std::runtime_error("cannot read image " + quoted(path) + " as " + format +
                             ": its header is damaged" + stb_reason());
  }
  const int64_t pixels = static_cast<int64_t>(w) * static_cast<int64_t>(h);
  if (w <= 0 || h <= 0 || pixels > kMaxImagePixels) {
    throw std::runtime_error("image " + quoted(path) + (format.empty() ? "" : " (" + format + ")") +
                             " is " + std::to_string(w) + " x " + std::to_string(h) + " pixels (" +
                             with_commas(static_cast<uint64_t>(std::max<int64_t>(pixels, 0))) +
                             "), more than the " + with_commas(kMaxImagePixels) +
                             " pixels (e.g. 8192 x 8192) minidl decodes: shrink it first");
  }

  std::unique_ptr<unsigned char, StbiFree> pixels_rgb(
      stbi_load_from_file(file.get(), &w, &h, &channels_in_file, 3));  // always ask for RGB
  if (!pixels_rgb) {
    throw std::runtime_error("cannot decode image " + quoted(path) + " as " + as_format +
                             ": the file is damaged or truncated" + stb_reason());
  }
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > kMaxImagePixels) {  // never per stb
    throw std::runtime_error("image " + quoted(path) + " decoded to " + std::to_string(w) + " x " +
                             std::to_string(h) + " pixels, not the size its header announced");
  }
  const int side = static_cast<int>(kImageSide);

  // HWC RGB bytes at 32x32.
  std::vector<unsigned char> hwc(static_cast<size_t>(kImageBytes));
  if (w == side && h == side) {
    std::copy(pixels_rgb.get(), pixels_rgb.get() + kImageBytes, hwc.begin());
  } else {
    if (!stbir_resize_uint8(pixels_rgb.get(), w, h, 0, hwc.data(), side, side, 0, 3)) {
      throw std::runtime_error("cannot resize image " + quoted(path) + " from " +
                               std::to_string(w) + " x " + std::to_string(h) +
                               " to 32 x 32 (stb_image_resize failed)");
    }
  }

  // HWC -> CHW, then normalize like the dataset.
  std::vector<uint8_t> chw(static_cast<size_t>(kImageBytes));
  for (int64_t i = 0; i < kPlaneBytes; ++i) {
    for (int64_t c = 0; c < kChannels; ++c) chw[c * kPlaneBytes + i] = hwc[i * kChannels + c];
  }
  Tensor out(Shape{1, kChannels, kImageSide, kImageSide});
  normalize_image(chw.data(), out.data(), norm);
  return out;
}

}  // namespace minidl::data
