// minidl — the command-line interface (CLI11). Each subcommand lives in apps/cmd_<name>.cpp and
// declares its own flags; errors from the library are printed as one line (parameter names
// turned into flag names), exit status 1.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "apps/cli.hpp"
#include "core/simd.hpp"

using namespace minidl::app;

int main(int argc, char** argv) {
  CLI::App app{"minidl — a small C++ deep learning framework for inspecting BatchNorm on CIFAR-10"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version", [] { return version_text(); },
      "print the version, git commit, build type, BLAS and SIMD path, and exit");
  const Command commands[] = {add_train(app),      add_eval(app),     add_predict(app),
                              add_bench(app),      add_bn_stats(app), add_recalibrate(app),
                              add_experiment(app), add_plot(app)};
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
    // A bad flag: one line naming it, exit status 1 like every other error. A first word that
    // is no subcommand is named (CLI11 would only say that one is required).
    std::string known, message = e.what();
    bool listed = false;
    for (const Command& c : commands) {
      known += (known.empty() ? "" : ", ") + c.app->get_name();
      listed = listed || (argc > 1 && c.app->get_name() == argv[1]);
    }
    if (argc > 1 && argv[1][0] != '-' && !listed)
      message = "unknown subcommand \"" + std::string(argv[1]) + "\"; the subcommands: " + known;
    std::fprintf(stderr, "minidl: error: %s\nRun with --help for the flags and their ranges.\n",
                 message.c_str());
    return 1;
  }
  try {
    for (const Command& c : commands) {
      if (c.app->parsed()) c.run();
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "minidl: error: %s\n", with_flag_names(e.what()).c_str());
    return 1;
  }
  return 0;
}
