// minidl — test-time-augmentation views of a batch of normalized images (airbench94's TTA).
//
// airbench94 (Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv 2404.00498;
// legacy/airbench94.py) evaluates a model on several views of every test image and combines
// the outputs: the image and its mirror image (hflip), and at its highest level also the
// images translated by one pixel (crop_reflect with pad 1 at offsets (0, 0) and (2, 2)) and
// their mirror images.
//
// These are plain data functions on float tensors: no autograd (the outputs have no graph and
// requires_grad() == false), any N, C, H, W. Because the images are already normalized, the
// padding reflects normalized values, as torch.nn.functional.pad(mode="reflect") on a
// normalized batch does.
#pragma once

#include <cstdint>

#include "core/tensor.hpp"

namespace minidl::data {

/// Mirrors every image left-right: out[n][c][y][x] = images[n][c][y][W - 1 - x]
/// (torch.flip(images, dims=[-1])). Shape: [N, C, H, W] -> [N, C, H, W]; a new tensor.
/// Throws std::invalid_argument (naming hflip, the expected [N, C, H, W] and the shape given)
/// if `images` is undefined or not 4-d.
Tensor hflip(const Tensor& images);

/// Reflect padding's source index for index i of a side of length n (torch's mode "reflect":
/// the edge is not repeated): -i left of 0, 2 (n - 1) - i right of n - 1, i inside. Valid for
/// -n < i < 2 n - 1. Shared by crop_reflect and the loader's translation (data/loader.cpp).
inline int64_t reflect_index(int64_t i, int64_t n) {
  return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
}

/// Pads every image by `pad` pixels on each side with reflect padding, then takes the H x W
/// window whose top-left corner is (y0, x0) in the padded image:
///     out[n][c][y][x] = images[n][c][r_H(y + y0 - pad)][r_W(x + x0 - pad)],
///     r_S(i) = i < 0 ? -i : (i > S - 1 ? 2 (S - 1) - i : i)
/// (the edge pixel is not repeated: column -1 is column 1), i.e.
/// torch.nn.functional.pad(images, (pad,) * 4, mode="reflect")[..., y0:y0 + H, x0:x0 + W].
/// (pad, pad) is the identity; the view shows the image moved by (pad - y0, pad - x0).
/// Shape: [N, C, H, W] -> [N, C, H, W]; a new tensor.
/// Throws std::invalid_argument, naming crop_reflect and what was expected, if `images` is
/// undefined or not 4-d, if pad < 0 or pad >= H or pad >= W (torch's reflect padding needs
/// pad < the side), or if y0 or x0 is outside 0..2 pad.
Tensor crop_reflect(const Tensor& images, int64_t pad, int64_t y0, int64_t x0);

}  // namespace minidl::data
