// minidl — the command-line interface (CLI11). Each subcommand lives in apps/cmd_<name>.cpp and
// declares its own flags (apps/help.cpp lists them and lays out the help); errors from the
// library are printed as one line (parameter names turned into flag names), exit status 1.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "apps/progress.hpp"
#include "core/simd.hpp"

using namespace minidl::app;

int main(int argc, char** argv) {
  CLI::App app{"minidl — a small C++ deep learning framework for inspecting BatchNorm on CIFAR-10"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version", [] { return version_text(); },
      "print the version, git commit, build type, BLAS and SIMD path, and exit");
  const std::vector<Command> commands = add_commands(app);
  try {
    minidl::simd::active();  // MINIDL_ISA's path, or the CPU's: a bad choice is one line here
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minidl: error: %s\n", e.what());
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --help-all, --version: their text, exit status 0
  } catch (const CLI::ParseError& e) {
    // A bad flag: one line naming it (and the flags it may have meant), exit status 1 like
    // every other error.
    std::fprintf(stderr, "minidl: error: %s\n%s\n", parse_error_message(app, e).c_str(),
                 help_hint(app).c_str());
    return 1;
  }
  try {
    for (const Command& c : commands) {
      if (c.app->parsed()) c.run();
    }
  } catch (const std::exception& e) {
    clear_progress();
    std::fflush(stdout);
    std::fprintf(stderr, "minidl: error: %s\n", with_flag_names(e.what()).c_str());
    return 1;
  }
  return 0;
}
