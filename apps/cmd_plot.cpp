// minidl plot — draws a run folder's curves (accuracy.png, loss.png) from its metrics.csv.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "apps/cli.hpp"

namespace minidl::app {

namespace {
/// Draws RUN_DIR/accuracy.png and RUN_DIR/loss.png with scripts/plot_run.py and names them.
/// Throws std::invalid_argument if run_dir has no metrics.csv, and draw_plots' errors.
void run_plot(const std::string& run_dir) {
  namespace fs = std::filesystem;
  if (!fs::is_regular_file(fs::path(run_dir) / "metrics.csv")) {
    throw std::invalid_argument("RUN_DIR " + run_dir +
                                " has no metrics.csv (is it a folder written by minidl train?)");
  }
  const std::string script = draw_plots("plot_run.py", run_dir);
  std::printf("plots: %s, %s (drawn by %s)\n", (fs::path(run_dir) / "accuracy.png").c_str(),
              (fs::path(run_dir) / "loss.png").c_str(), script.c_str());
}
}  // namespace

Command add_plot(CLI::App& app) {
  auto run_dir = std::make_shared<std::string>();
  auto* p = app.add_subcommand(
      "plot", "draw a run folder's accuracy.png and loss.png from its metrics.csv (matplotlib)");
  p->add_option("RUN_DIR", *run_dir, "the run folder (train --out) to draw")->required();
  return {p, [run_dir] { run_plot(*run_dir); }};
}

}  // namespace minidl::app
