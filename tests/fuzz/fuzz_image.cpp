// libFuzzer harness: minidl::data::load_image on arbitrary bytes (the input is the whole image
// file; stb_image finds the format from its contents). Any std::exception is a valid outcome;
// a crash, a sanitizer report, a leak, a hang or an allocation past libFuzzer's -rss_limit_mb
// / -malloc_limit_mb is a finding. An image that loads is a [1, 3, 32, 32] tensor of finite
// values.
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>

#include "data/image.hpp"
#include "tests/fuzz/fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static minidl::fuzz::InputFile input("image", ".img");
  minidl::Tensor t;
  const std::string& path = input.write(data, size);  // outside the try: not a finding
  try {
    t = minidl::data::load_image(path);
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
