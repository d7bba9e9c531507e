// minidl — load_image (see image.hpp). Uses the stb implementations compiled into Debian's
// libstb.so, so STB_IMAGE_IMPLEMENTATION / STB_IMAGE_RESIZE_IMPLEMENTATION must NOT be defined
// here (that would duplicate the library's symbols).
#include "data/image.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

namespace minidl::data {

namespace {

struct StbiFree {
  void operator()(unsigned char* p) const { stbi_image_free(p); }
};

}  // namespace

Tensor load_image(const std::string& path, const Normalization& norm) {
  int w = 0, h = 0, channels_in_file = 0;
  std::unique_ptr<unsigned char, StbiFree> pixels(
      stbi_load(path.c_str(), &w, &h, &channels_in_file, 3));  // always ask for RGB
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    throw std::runtime_error("load_image: cannot read '" + path + "': " +
                             (reason ? reason : "unknown stb_image error"));
  }
  const int side = static_cast<int>(kImageSide);

  // HWC RGB bytes at 32x32.
  std::vector<unsigned char> hwc(static_cast<size_t>(kImageBytes));
  if (w == side && h == side) {
    std::copy(pixels.get(), pixels.get() + kImageBytes, hwc.begin());
  } else {
    if (!stbir_resize_uint8(pixels.get(), w, h, 0, hwc.data(), side, side, 0, 3)) {
      throw std::runtime_error("load_image: stb_image_resize failed to resize '" + path + "' from " +
                               std::to_string(w) + "x" + std::to_string(h) + " to 32x32");
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
