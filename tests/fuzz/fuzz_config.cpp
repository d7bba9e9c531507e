// libFuzzer harness: reading a run's config.json as `minidl train --resume` does,
// minidl::train::read_config(path) (size and nesting checks, parse, config_from_json). Any
// std::exception (a parse error, a wrong type) is a valid outcome; a crash, a sanitizer report
// (e.g. an out-of-range float-to-integer conversion), a leak or a hang is a finding. A config that
// reads must also survive config_to_json -> config_from_json unchanged.
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "train/run_dir.hpp"
#include "tests/fuzz/fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using minidl::train::config_from_json;
  using minidl::train::config_to_json;
  static minidl::fuzz::InputFile file("config", ".json");
  const std::string& path = file.write(data, size);
  minidl::train::TrainOptions c;
  try {
    c = minidl::train::read_config(path);
  } catch (const std::exception&) {
    return 0;
  }
  try {
    const std::string once = config_to_json(c).dump();
    const std::string twice = config_to_json(config_from_json(config_to_json(c))).dump();
    if (once != twice) minidl::fuzz::contract_broken("config_to_json/config_from_json differ");
  } catch (const std::exception&) {
    minidl::fuzz::contract_broken("a config that was read cannot be written and read back");
  }
  return 0;
}
