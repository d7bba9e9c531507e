// minidl — loading an arbitrary image file as a CIFAR-10-shaped input.
//
// Decoding is stb_image (PNG, JPEG, BMP, TGA, GIF, PSD, PIC, PNM, HDR), resizing is
// stb_image_resize (default filter: Mitchell when shrinking, Catmull-Rom when enlarging;
// edges clamped); both come from Debian's libstb (link -lstb).
#pragma once

#include <string>

#include "core/tensor.hpp"
#include "data/loader.hpp"

namespace minidl::data {

/// Loads the image at `path` as a tensor [1, 3, 32, 32] of normalized floats
/// (byte / 255 - mean[c]) / std[c], channels R, G, B, ready for a CIFAR-10 model.
///  - Grayscale, gray+alpha and RGBA images are converted to RGB by stb (alpha is dropped, not
///    composited; gray is replicated into R, G and B).
///  - 16-bit images are reduced to 8 bits by stb.
///  - An image whose size is not 32x32 is resized (stretched, aspect ratio not kept) to 32x32
///    with stb_image_resize (stbir_resize_uint8: linear-light is not used, 8-bit values are
///    filtered directly).
/// Throws std::runtime_error naming the file and stb's failure reason when the file cannot be
/// read or decoded, or if resizing fails.
Tensor load_image(const std::string& path, const Normalization& norm = {});

}  // namespace minidl::data
