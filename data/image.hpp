// minidl — loading an arbitrary image file as a CIFAR-10-shaped input.
//
// Decoding is stb_image (PNG, JPEG, BMP, TGA, GIF, PSD, PIC, PNM, HDR), resizing is
// stb_image_resize (default filter: Mitchell when shrinking, Catmull-Rom when enlarging;
// edges clamped); both come from Debian's libstb (link -lstb).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.hpp"
#include "data/loader.hpp"

namespace minidl::data {

/// The largest image load_image decodes, in pixels (width x height): 2^26 = 67,108,864, e.g.
/// 8192 x 8192 or a 64-megapixel photo. The size is read from the file's header (stbi_info)
/// before anything is decoded, so a small file that claims a huge image (a "decompression
/// bomb": a 440 KB PNG of 12000 x 12000 is refused in 0.06 s with 13 MB peak RSS). Decoding an
/// image at the cap is allowed but costly: an 8-bit RGB PNG of 8192 x 8192 took 410 MB peak RSS
/// and about 3 s of CPU (the RGB result is 3 bytes per pixel; stb's working buffers come on top,
/// more for 16-bit and HDR files).
constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

/// Loads the image at `path` as a tensor [1, 3, 32, 32] of normalized floats
/// (byte / 255 - mean[c]) / std[c], channels R, G, B, ready for a CIFAR-10 model.
///  - Formats: PNG, JPEG, BMP, GIF (first frame), TGA, PSD, PIC, PNM (8-bit P5/P6) and HDR.
///  - 16-bit images are reduced to 8 bits by stb.
///  - An image whose size is not 32x32 is resized (stretched, aspect ratio not kept) to 32x32
///    with stb_image_resize (stbir_resize_uint8: linear-light is not used, 8-bit values are
///    filtered directly, each channel on its own).
///  - Grayscale, gray+alpha and RGBA images are then converted to RGB as stb would (alpha is
///    dropped, not composited; gray is replicated into R, G and B).
/// Throws std::runtime_error, the message naming the file (in double quotes), when
///  - the path is missing or cannot be opened (the OS reason), or is a directory or another
///    non-regular file,
///  - the file is empty (0 bytes),
///  - its header is not one of the formats above (the message lists them; stb's reason follows
///    in parentheses) or is damaged,
///  - the header claims more than `max_pixels` pixels (default kMaxImagePixels; the message
///    gives the width and height; nothing is decoded),
///  - a JPEG declares a Huffman table of more than 256 codes (checked before stb reads the
///    file: Debian's stb_image 2.27 would write past its tables; see image.cpp),
///  - a PNM has 16-bit samples (maxval > 255: stb 2.27 reads them in the wrong byte order),
///  - decoding fails part way (the message names the format the header announced, e.g.
///    "as PNG", and stb's reason in parentheses),
///  - resizing fails.
/// `max_pixels` (>= 1, else std::invalid_argument) lowers the cap, e.g. for the fuzz harness,
/// which must not spend seconds on a 25-byte TGA that claims 50 megapixels (stb pads a short
/// file with zeros, so a tiny file can make it decode a large image up to the cap).
Tensor load_image(const std::string& path, const Normalization& norm = {},
                  int64_t max_pixels = kMaxImagePixels);

}  // namespace minidl::data
