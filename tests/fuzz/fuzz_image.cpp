// libFuzzer harness: minidl::data::load_image on arbitrary bytes (the input is the whole image
// file; stb_image finds the format from its contents), with a pixel cap of 2^16. Any
// std::exception is a valid outcome; a crash, a sanitizer report, a leak, a hang or an
// allocation past libFuzzer's -rss_limit_mb / -malloc_limit_mb is a finding. An image that
// loads is a [1, 3, 32, 32] tensor of finite values.
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>

#include "data/image.hpp"
#include "tests/fuzz/fuzz_input.hpp"

// A lower pixel cap than kMaxImagePixels (2^26): stb pads a truncated file with zeros, so a
// 25-byte TGA can make it decode 50 megapixels, 40 s under the sanitizers, and even resizing
// 4 x 28,000 pixels to 32 x 32 takes 4 s there (0.1 s in the normal build). The cap check is
// the same code either way (tests/test_bad_input_data.cpp tests the real cap).
constexpr int64_t kFuzzMaxPixels = int64_t{1} << 16;  // 65,536 (256 x 256)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static minidl::fuzz::InputFile input("image", ".img");
  minidl::Tensor t;
  const std::string& path = input.write(data, size);  // outside the try: not a finding
  try {
    t = minidl::data::load_image(path, {}, kFuzzMaxPixels);
  } catch (const std::exception&) {
    return 0;
  }
  if (t.shape() != minidl::Shape{1, 3, 32, 32})
    minidl::fuzz::contract_broken("load_image returned a shape other than [1, 3, 32, 32]");
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(t.data()[i])) minidl::fuzz::contract_broken("a non-finite pixel value");
  }
  return 0;
}
