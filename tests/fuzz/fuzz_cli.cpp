// libFuzzer harness: the command line. The input is split at NUL and newline bytes into at most
// 32 arguments, which the CLI parses as `minidl ARGS...` (every subcommand's flags and
// validators, apps/cli.hpp); a parsed `train` then checks its flags as it would before training
// (apps/cmd_train.cpp: recipe rules, empty paths, --resume against the run's config.json, the
// options' ranges), without training. A CLI11 parse error or any std::exception is a valid
// outcome (the CLI prints it as one line); a crash, a sanitizer report, a leak or a hang is a
// finding.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "apps/cli.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minidl::app;
  std::vector<std::string> args = {"minidl"};
  std::string word;
  for (size_t i = 0; i <= size && args.size() <= 32; ++i) {
    if (i == size || data[i] == 0 || data[i] == '\n') {
      args.push_back(word);
      word.clear();
    } else {
      word += static_cast<char>(data[i]);
    }
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  CLI::App app{"minidl"};
  app.require_subcommand(1);
  const std::vector<Command> commands = add_commands(app);
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
    for (const Command& c : commands) {
      if (c.app->parsed() && c.check) c.check();
    }
  } catch (const CLI::ParseError& e) {
    (void)parse_error_message(app, e);  // what the CLI prints
  } catch (const std::exception& e) {
    (void)with_flag_names(e.what());  // what the CLI prints
  }
  return 0;
}
