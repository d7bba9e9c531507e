// minidl — test-time-augmentation views: hflip, crop_reflect (see views.hpp).
#include "data/views.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace minidl::data {

namespace {

/// Throws unless `images` is a defined 4-d tensor [N, C, H, W].
void check_4d(const Tensor& images, const char* who) {
  if (!images.defined()) {
    throw std::invalid_argument(std::string(who) +
                                ": expected images [N, C, H, W], got an undefined tensor");
  }
  if (images.dim() != 4) {
    throw std::invalid_argument(std::string(who) + ": expected images [N, C, H, W], got " +
                                shape_str(images.shape()));
  }
}

}  // namespace

Tensor hflip(const Tensor& images) {
  check_4d(images, "hflip");
  const Shape& shape = images.shape();
  const int64_t planes = shape[0] * shape[1], h = shape[2], w = shape[3];
  Tensor out = Tensor::empty(shape);
  const float* src = images.data();
  float* dst = out.mutable_data();
  for (int64_t p = 0; p < planes * h; ++p) {  // every row of every plane
    const float* srow = src + p * w;
    float* drow = dst + p * w;
    for (int64_t x = 0; x < w; ++x) drow[x] = srow[w - 1 - x];
  }
  return out;
}

Tensor crop_reflect(const Tensor& images, int64_t pad, int64_t y0, int64_t x0) {
  check_4d(images, "crop_reflect");
  const Shape& shape = images.shape();
  const int64_t planes = shape[0] * shape[1], h = shape[2], w = shape[3];
  if (pad < 0 || pad >= h || pad >= w) {
    throw std::invalid_argument(
        "crop_reflect: pad must be in 0..min(H, W) - 1 (reflect padding "
        "needs pad < H and pad < W), got pad " +
        std::to_string(pad) + " for images " + shape_str(shape));
  }
  if (y0 < 0 || y0 > 2 * pad || x0 < 0 || x0 > 2 * pad) {
    throw std::invalid_argument("crop_reflect: offset (y0, x0) must be in 0..2 pad = 0.." +
                                std::to_string(2 * pad) + ", got (" + std::to_string(y0) + ", " +
                                std::to_string(x0) + ")");
  }
  std::vector<int64_t> rows(static_cast<size_t>(h)), cols(static_cast<size_t>(w));
  for (int64_t y = 0; y < h; ++y) rows[static_cast<size_t>(y)] = reflect_index(y + y0 - pad, h);
  for (int64_t x = 0; x < w; ++x) cols[static_cast<size_t>(x)] = reflect_index(x + x0 - pad, w);
  Tensor out = Tensor::empty(shape);
  const float* src = images.data();
  float* dst = out.mutable_data();
  for (int64_t p = 0; p < planes; ++p) {
    const float* splane = src + p * h * w;
    float* dplane = dst + p * h * w;
    for (int64_t y = 0; y < h; ++y) {
      const float* srow = splane + rows[static_cast<size_t>(y)] * w;
      float* drow = dplane + y * w;
      for (int64_t x = 0; x < w; ++x) drow[x] = srow[cols[static_cast<size_t>(x)]];
    }
  }
  return out;
}

}  // namespace minidl::data
