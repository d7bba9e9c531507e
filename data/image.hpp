// minidl — loading an arbitrary image file as a CIFAR-10-shaped input.
//
// Decoding is stb_image, for PNG, JPEG and BMP only (recognized by their first bytes; stb's
// other decoders are never reached: its Radiance HDR reader hangs on a crafted 49-byte file,
// CVE-2021-42715, in Debian's stb_image 2.27), resizing is
// stb_image_resize (default filter: Mitchell when shrinking, Catmull-Rom when enlarging;
// edges clamped); both come from Debian's libstb (link -lstb).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.hpp"
#include "data/loader.hpp"

namespace minidl::data {

/// The largest image load_image decodes, in pixels (width x height): 2^26 = 67,108,864, e.g.
/// 8192 x 8192 or a 64-megapixel photo. The size is read from the file's header (by minidl
/// itself, then by stbi_info) before anything is decoded, so a small file that claims a huge
/// image (a "decompression bomb": a 440 KB PNG of 12000 x 12000 is refused in 0.06 s with 13 MB
/// peak RSS) is refused as too large. Decoding an image at the cap is allowed but costly: an
/// 8-bit RGB PNG of 8192 x 8192 took 410 MB peak RSS and about 3 s of CPU (the RGB result is 3
/// bytes per pixel; stb's working buffers come on top, more for 16-bit files).
constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

/// Loads the image at `path` as a tensor [1, 3, 32, 32] of normalized floats
/// (byte / 255 - mean[c]) / std[c], channels R, G, B, ready for a CIFAR-10 model.
///  - Formats: PNG, JPEG and BMP (bottom-up and top-down, i.e. a negative height), recognized by
///    their signatures (the file's name does not matter).
///  - 16-bit PNGs are reduced to 8 bits by stb.
///  - An image whose size is not 32x32 is resized (stretched, aspect ratio not kept) to 32x32
///    with stb_image_resize (stbir_resize_uint8: linear-light is not used, 8-bit values are
///    filtered directly, each channel on its own).
///  - Grayscale, gray+alpha and RGBA images are then converted to RGB as stb would (alpha is
///    dropped, not composited; gray is replicated into R, G and B).
/// Throws std::runtime_error, the message naming the file (in double quotes), when
///  - the path is missing or cannot be opened (the OS reason), or is a directory or another
///    non-regular file,
///  - the file is empty (0 bytes),
///  - its first bytes are not a PNG, JPEG or BMP signature ("is not an image minidl can read:
///    expected PNG, JPEG or BMP"), or are another format's ("is in the GIF format; minidl reads
///    PNG, JPEG or BMP only"; likewise PSD, HDR, PIC, PNM; TGA has no signature and falls in the
///    first case),
///  - the header is damaged (stb's reason in parentheses),
///  - the header claims more than `max_pixels` pixels (default kMaxImagePixels): "is too
///    large: W x H pixels (N), more than the CAP pixels minidl decodes"; nothing is decoded,
///  - a JPEG declares a Huffman table of more than 256 codes (checked before stb reads the
///    file: Debian's stb_image 2.27 would write past its tables; see image.cpp),
///  - decoding fails part way (the message names the format the header announced, e.g.
///    "as PNG", and stb's reason in parentheses),
///  - resizing fails.
/// `max_pixels` (>= 1, else std::invalid_argument) lowers the cap, e.g. for the fuzz harness,
/// which must not spend seconds on a 25-byte file that claims 50 megapixels (stb pads a short
/// file with zeros, so a tiny file can make it decode a large image up to the cap).
Tensor load_image(const std::string& path, const Normalization& norm = {},
                  int64_t max_pixels = kMaxImagePixels);

}  // namespace minidl::data
