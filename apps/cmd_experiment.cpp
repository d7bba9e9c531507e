// minidl experiment bn-only — the freeze-all-but-BatchNorm experiment (Frankle, Schwab & Morcos,
// ICLR 2021): the same model, seed and recipe trained five ways (all, bn, fc, bn+fc,
// random-per-channel), then a table, per-epoch curves and the learned gammas.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "core/safetensors.hpp"
#include "layers/batch_norm.hpp"

namespace minidl::app {

namespace fs = std::filesystem;

/// The recipe's TrainConfig for `epochs` (milestones scale with the epoch count).
static TrainConfig recipe_config(const ExperimentConfig& e) {
  TrainConfig c;
  c.data = e.data;
  c.model = e.model;
  c.epochs = e.epochs;
  c.seed = e.seed;
  c.threads = e.threads;
  c.limit_train = e.limit_train;
  c.limit_test = e.limit_test;
  c.quiet = e.quiet;
  if (e.recipe == "frankle2021") {
    // The paper's CIFAR ResNet recipe: SGD momentum 0.9, lr 0.1 dropped x0.1 at epochs 80 and
    // 120 of 160, batch 128, weight decay 1e-4, flip + crop; gamma ~ U[0, 1] as in its code.
    c.optimizer = "sgd";
    c.momentum = 0.9f;
    c.nesterov = false;
    c.lr = 0.1f;
    c.schedule = "multistep";
    c.milestones = {e.epochs * 80.0 / 160.0, e.epochs * 120.0 / 160.0};
    c.gamma = 0.1f;
    c.batch_size = 128;
    c.weight_decay = 1e-4f;
    c.warmup_epochs = 0;
    c.label_smoothing = 0.0f;
    c.augment = true;
    c.bn_init = "uniform";
  } else if (e.recipe != "default") {
    throw std::invalid_argument("--recipe must be default or frankle2021, got \"" + e.recipe + "\"");
  }
  return c;
}

void run_experiment(const ExperimentConfig& e) {
  if (e.epochs < 1) throw std::invalid_argument("--epochs must be >= 1");
  fs::create_directories(e.out);
  struct Row {
    std::string variant;
    TrainResult r;
    double gamma_off = 0.0;  // fraction of BN features with |gamma| < 0.05
    int64_t gammas = 0;
  };
  std::vector<Row> rows;
  for (const std::string& variant : e.variants) {
    TrainConfig c = recipe_config(e);
    c.train_only = variant;
    c.out = e.out + "/" + variant;
    if (!e.quiet) std::printf("\n=== variant %s ===\n", variant.c_str());
    Row row{variant, run_train(c)};
    // The learned gammas of every BN layer, for the histogram and the "turned off" fraction.
    std::shared_ptr<Module> model = load_model(c.out + "/model.safetensors");
    std::ofstream g(c.out + "/gammas.csv");
    g.precision(9);  // max_digits10 of float: the values read back exactly
    g << "layer,channel,gamma\n";
    int64_t off = 0;
    for (auto& [name, m] : model->named_modules()) {
      auto* bn = dynamic_cast<BatchNorm*>(m);
      if (!bn || !bn->weight.defined()) continue;
      for (int64_t i = 0; i < bn->weight.numel(); ++i) {
        const float v = bn->weight.data()[i];
        g << name << "," << i << "," << v << "\n";
        off += std::fabs(v) < 0.05f;
        ++row.gammas;
      }
    }
    row.gamma_off = row.gammas ? static_cast<double>(off) / row.gammas : 0.0;
    rows.push_back(row);
  }

  std::ostringstream csv, md;
  csv << "variant,trained_parameters,train_accuracy,test_accuracy,wall_seconds,images_per_second,"
         "gamma_below_0.05\n";
  md << "# BN-only experiment: " << e.model << ", " << e.epochs << " epochs, recipe " << e.recipe
     << ", seed " << e.seed << "\n\n"
     << "| variant | trained parameters | train accuracy | test accuracy | wall time | images/s |"
        " BN features with abs(gamma) < 0.05 |\n|---|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    char line[512];
    std::snprintf(line, sizeof line, "%s,%lld,%.4f,%.4f,%.1f,%.1f,%.4f\n", r.variant.c_str(),
                  static_cast<long long>(r.r.trainable_parameters), r.r.final_train_accuracy,
                  r.r.final_test_accuracy, r.r.seconds, r.r.images_per_second, r.gamma_off);
    csv << line;
    std::snprintf(line, sizeof line, "| %s | %lld | %.2f%% | %.2f%% | %.0f s | %.0f | %.1f%% |\n",
                  r.variant.c_str(), static_cast<long long>(r.r.trainable_parameters),
                  100 * r.r.final_train_accuracy, 100 * r.r.final_test_accuracy, r.r.seconds,
                  r.r.images_per_second, 100 * r.gamma_off);
    md << line;
  }
  md << "\nTrain accuracy is measured on the augmented training batches in train mode; test "
        "accuracy on the test images in eval mode (running statistics). Chance is 10%.\n"
        "`bn`: only BatchNorm's weight (gamma) and bias (beta) learn; every convolution and the "
        "output layer keep their random initial values. `fc`: only the output layer learns. "
        "`random-per-channel`: two random convolution weights per output channel learn instead "
        "of BN's parameters (the paper's control).\n\nPlots: `accuracy.png` (test accuracy per "
        "epoch), `gammas.png` (histogram of the learned gammas).\n";
  write_text_atomic(e.out + "/results.csv", csv.str());
  write_text_atomic(e.out + "/results.md", md.str());

  // Plots through Debian's matplotlib (scripts/plot_experiment.py next to the build folder).
  char exe[4096] = {0};
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  fs::path script = fs::path(len > 0 ? std::string(exe, len) : "").parent_path().parent_path() /
                    "scripts" / "plot_experiment.py";
  if (const char* s = std::getenv("MINIDL_SCRIPTS")) script = fs::path(s) / "plot_experiment.py";
  const std::string cmd = "/usr/bin/python3 " + script.string() + " " + e.out;
  if (fs::exists(script) && std::system((cmd + " > /dev/null 2>&1").c_str()) == 0) {
    if (!e.quiet) std::printf("plots: %s/accuracy.png, %s/gammas.png\n", e.out.c_str(), e.out.c_str());
  } else if (!e.quiet) {
    std::printf("plots not made (needs /usr/bin/python3 with matplotlib: "
                "scripts/install_deps.sh --with-python); run: %s\n", cmd.c_str());
  }
  if (!e.quiet) std::printf("\n%s\nwritten: %s/results.md, %s/results.csv\n", md.str().c_str(),
                            e.out.c_str(), e.out.c_str());
}

}  // namespace minidl::app
