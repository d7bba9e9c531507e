// libFuzzer harness: minidl::data::read_cifar10_file on arbitrary bytes (the input is the whole
// .bin file). Any std::exception is a valid outcome; a crash, a sanitizer report, a leak or a
// hang is a finding, and so is a result that breaks the reader's contract (N >= 1 records,
// 3,072 image bytes per label, labels 0..9, the bytes of the file).
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

#include "data/cifar10.hpp"
#include "tests/fuzz/fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minidl::data;
  static minidl::fuzz::InputFile input("cifar10", ".bin");
  Dataset ds;
  const std::string& path = input.write(data, size);  // outside the try: not a finding
  try {
    ds = read_cifar10_file(path);
  } catch (const std::exception&) {
    return 0;
  }
  const int64_t n = ds.size();
  if (n < 1) minidl::fuzz::contract_broken("an empty dataset was returned");
  if (static_cast<uint64_t>(n) * kRecordBytes != size)
    minidl::fuzz::contract_broken("record count does not match the file size");
  if (ds.images.size() != static_cast<size_t>(n * kImageBytes))
    minidl::fuzz::contract_broken("image bytes do not match the record count");
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* rec = data + i * kRecordBytes;
    if (ds.labels[static_cast<size_t>(i)] != rec[0] || ds.labels[static_cast<size_t>(i)] > 9)
      minidl::fuzz::contract_broken("a label differs from the file or is out of 0..9");
    if (std::memcmp(ds.images.data() + i * kImageBytes, rec + 1,
                    static_cast<size_t>(kImageBytes)) != 0)
      minidl::fuzz::contract_broken("image bytes differ from the file");
  }
  return 0;
}
