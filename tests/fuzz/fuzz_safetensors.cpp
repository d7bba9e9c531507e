// libFuzzer harness: minidl::load_safetensors on arbitrary bytes (the input is the whole file).
// Any std::exception is a valid outcome (the loader reports bad files by throwing); a crash,
// a sanitizer report, a leak or a hang is a finding. A file that loads must also survive a
// round trip: saved again with save_safetensors and reloaded, it gives the same tensors and
// metadata.
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

#include "core/safetensors.hpp"
#include "tests/fuzz/fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static minidl::fuzz::InputFile input("safetensors", ".safetensors");
  static minidl::fuzz::InputFile copy("safetensors_copy", ".safetensors");
  minidl::Checkpoint ck;
  const std::string& path = input.write(data, size);  // outside the try: not a finding
  try {
    ck = minidl::load_safetensors(path);
  } catch (const std::exception&) {
    return 0;
  }
  for (const auto& [name, t] : ck.tensors) {
    if (t.numel() < 0) minidl::fuzz::contract_broken("a loaded tensor has a negative size");
  }
  minidl::Checkpoint again;
  try {
    minidl::save_safetensors(copy.path(), ck.tensors, ck.metadata);
    again = minidl::load_safetensors(copy.path());
  } catch (const std::exception&) {
    minidl::fuzz::contract_broken("a loaded checkpoint cannot be saved and read back");
  }
  if (again.metadata != ck.metadata || again.tensors.size() != ck.tensors.size()) {
    minidl::fuzz::contract_broken("round trip changed the metadata or the tensor count");
  }
  for (size_t i = 0; i < ck.tensors.size(); ++i) {
    const auto& [n1, t1] = ck.tensors[i];
    const auto& [n2, t2] = again.tensors[i];
    if (n1 != n2 || t1.shape() != t2.shape() ||
        (t1.numel() > 0 &&
         std::memcmp(t1.data(), t2.data(), static_cast<size_t>(t1.numel()) * sizeof(float)) != 0)) {
      minidl::fuzz::contract_broken("round trip changed a tensor");
    }
  }
  return 0;
}
