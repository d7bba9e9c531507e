// minidl experiment bn-only — the freeze-all-but-BatchNorm experiment (Frankle, Schwab & Morcos,
// ICLR 2021): the same model, seed and recipe trained several ways (all, bn, fc, bn+fc,
// random-per-channel), then a table, per-epoch curves and the learned gammas.
// minidl experiment bn-only-sweep — that experiment for several models, then accuracy against
// depth and width (the paper's Figure 2).
//
// Every variant is an ordinary `minidl train` run directory, OUT/<variant>/ (OUT/<model>/<variant>/
// in a sweep). The tables are computed from those directories (metrics.csv, model.safetensors),
// never from memory, so an experiment split with --stop-after and --resume, or a variant
// trained by hand with `minidl train` and the same flags, gives the same table.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "core/safetensors.hpp"
#include "layers/batch_norm.hpp"
#include "optim/freeze.hpp"

namespace minidl::app {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// The recipe's TrainConfig for `model` and `epochs` (milestones scale with the epoch count).
static TrainConfig recipe_config(const ExperimentConfig& e, const std::string& model) {
  TrainConfig c;
  c.data = e.data;
  c.model = model;
  c.epochs = e.epochs;
  c.seed = e.seed;
  c.threads = e.threads;
  c.limit_train = e.limit_train;
  c.limit_test = e.limit_test;
  c.quiet = e.quiet;
  if (e.recipe == "frankle2021") {
    // open_lth's cifar_resnet defaults (models/cifar_resnet.py, datasets/cifar10.py): SGD
    // momentum 0.9 without Nesterov, lr 0.1 dropped x0.1 at epochs 80 and 120 of 160, batch
    // 128, weight decay 1e-4 on every trained parameter, flip + crop (pad 4 with black),
    // ImageNet mean/std, gamma ~ U[0, 1] and beta = 0. With --epochs E the milestones move to
    // E/2 and 3E/4: the schedule is compressed in proportion.
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
    c.normalize = "imagenet";
  } else if (!is_one_of(e.recipe, experiment_recipes())) {
    throw std::invalid_argument("--recipe must be " + choices_text(experiment_recipes()) +
                                ", got \"" + e.recipe + "\"");
  }
  return c;
}

/// Epochs finished in run directory `dir`: the "epoch" of its model.safetensors (0 if none).
static int64_t epochs_done(const std::string& dir) {
  const std::string path = dir + "/model.safetensors";
  if (!fs::exists(path)) return 0;
  const Checkpoint ck = load_safetensors(path);
  auto it = ck.metadata.find("epoch");
  const std::string& v = it == ck.metadata.end() ? std::string() : it->second;
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) {
    throw std::runtime_error("\"" + path +
                             "\" has no epoch count in its metadata (was it "
                             "written by minidl train?)");
  }
  return std::stoll(v);
}

/// Refuses to continue `dir` unless its config.json is `c` (data, out and threads aside).
static void check_same_config(const std::string& dir, const TrainConfig& c) {
  const std::string path = dir + "/config.json";
  json saved;
  try {
    saved = config_to_json(read_config_file(path));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("--resume: ") + e.what());
  }
  json want = config_to_json(c);
  for (const char* key : {"data", "out", "threads"}) {
    saved.erase(key);
    want.erase(key);
  }
  for (auto& [key, value] : want.items()) {
    if (saved[key] != value) {
      throw std::runtime_error("--resume: \"" + path + "\" was trained with " + key + " = " +
                               saved[key].dump() + ", this experiment asks for " + value.dump() +
                               " (use another --out, or the same flags)");
    }
  }
}

/// One finished variant, read back from its run directory.
struct VariantSummary {
  std::string variant;
  int64_t trainable = 0;  ///< parameter elements that learned
  int64_t epochs = 0;
  double train_accuracy = 0.0;     ///< last epoch, augmented batches, train-mode BN
  double test_accuracy = 0.0;      ///< last epoch, eval mode (what `minidl eval` prints)
  double wall_seconds = 0.0;       ///< sum of the epochs' times (training + evaluation)
  double images_per_second = 0.0;  ///< training throughput over all epochs
  double gamma_off = 0.0;          ///< fraction of BN features with |gamma| < 0.05
  int64_t gammas = 0;
};

/// Reads `dir`/metrics.csv and model.safetensors, writes `dir`/gammas.csv (layer, channel,
/// gamma; BN layers in registration order) and returns the variant's row.
static VariantSummary summarize(const std::string& dir, const TrainConfig& c) {
  VariantSummary s;
  s.variant = c.train_only;
  std::ifstream metrics(dir + "/metrics.csv");
  std::string line;
  std::getline(metrics, line);  // header
  double inverse_rate = 0.0;    // sum over epochs of 1 / images_per_second
  while (std::getline(metrics, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    auto number = [&](size_t i) {
      char* end = nullptr;
      const double x = i < f.size() ? std::strtod(f[i].c_str(), &end) : 0.0;
      if (i >= f.size() || end == f[i].c_str() || *end != '\0' || !std::isfinite(x)) {
        throw std::runtime_error("\"" + dir + "/metrics.csv\": row \"" + line.substr(0, 80) +
                                 "\" does not have 8 numeric columns");
      }
      return x;
    };
    s.train_accuracy = number(2);
    s.test_accuracy = number(4);
    s.wall_seconds += number(6);
    inverse_rate += 1.0 / std::max(number(7), 1e-9);
    ++s.epochs;
  }
  if (s.epochs == 0) throw std::runtime_error("\"" + dir + "/metrics.csv\" has no epochs");
  s.images_per_second = s.epochs / inverse_rate;  // every epoch has the same number of images

  std::shared_ptr<Module> model = load_model(dir + "/model.safetensors");
  const std::vector<optim::UpdateMask> masks = apply_train_only_flag(*model, c.train_only, c.seed);
  s.trainable = optim::count_trainable(*model, masks);
  std::ostringstream g;
  g.precision(9);  // max_digits10 of float: the values read back exactly
  g << "layer,channel,gamma\n";
  int64_t off = 0;
  for (auto& [name, bn] : model->named_modules_of<BatchNorm>()) {
    if (!bn->weight.defined()) continue;
    for (int64_t i = 0; i < bn->weight.numel(); ++i) {
      const float v = bn->weight.data()[i];
      g << name << "," << i << "," << v << "\n";
      off += std::fabs(v) < 0.05f;
      ++s.gammas;
    }
  }
  s.gamma_off = s.gammas ? static_cast<double>(off) / s.gammas : 0.0;
  write_text_atomic(dir + "/gammas.csv", g.str());
  return s;
}

/// Trains (or continues) every variant of `model` in `out`/<variant>/, spending at most
/// `budget` epochs (-1: no limit; decremented by the epochs trained). Appends one row per
/// finished variant to `rows`; returns false when the budget ran out before all finished.
static bool run_variants(const ExperimentConfig& e, const std::string& model,
                         const std::string& out, int64_t& budget,
                         std::vector<VariantSummary>& rows) {
  for (const std::string& variant : e.variants) {
    TrainConfig c = recipe_config(e, model);
    c.train_only = variant;
    c.out = out + "/" + variant;
    int64_t done = epochs_done(c.out);
    if (done > 0 && !e.resume) {
      throw std::runtime_error("\"" + c.out + "\" already holds a run (" + std::to_string(done) +
                               " epochs); pass --resume to continue it, or another --out");
    }
    if (done > 0) check_same_config(c.out, c);
    if (done < c.epochs) {
      if (budget == 0) return false;
      if (done > 0) c.resume = c.out;
      c.stop_after = budget;
      if (!e.quiet) {
        std::printf("\n=== %s, variant %s%s ===\n", model.c_str(), variant.c_str(),
                    done > 0 ? (", from epoch " + std::to_string(done)).c_str() : "");
      }
      const TrainResult r = run_train(c);
      if (budget > 0) budget -= r.epochs_run;
      done = epochs_done(c.out);
      if (done < c.epochs) return false;
    }
    rows.push_back(summarize(c.out, c));
  }
  return true;
}

static void validate(const ExperimentConfig& e) {
  if (e.epochs < 1)
    throw std::invalid_argument("--epochs must be >= 1, got " + std::to_string(e.epochs));
  if (e.stop_after == 0 || e.stop_after < -1)
    throw std::invalid_argument("--stop-after must be >= 1, got " + std::to_string(e.stop_after));
  if (e.variants.empty()) throw std::invalid_argument("--variants: give at least one variant");
  recipe_config(e, e.model);  // checks --recipe
}

static void print_stopped(const ExperimentConfig& e, const std::string& name) {
  if (!e.quiet) {
    std::printf(
        "\nstopped after --stop-after %lld epochs; continue with the same flags plus "
        "--resume: minidl experiment %s ... --out %s --resume\n",
        static_cast<long long>(e.stop_after), name.c_str(), e.out.c_str());
  }
}

/// Writes `out`/results.csv and results.md for one model's variants, then its plots.
static void write_experiment_tables(const ExperimentConfig& e, const std::string& model,
                                    const std::string& out,
                                    const std::vector<VariantSummary>& rows) {
  std::ostringstream csv, md;
  csv << "variant,trained_parameters,train_accuracy,test_accuracy,wall_seconds,images_per_second,"
         "gamma_below_0.05\n";
  md << "# BN-only experiment: " << model << ", " << e.epochs << " epochs, recipe " << e.recipe
     << ", seed " << e.seed << "\n\n"
     << "| variant | trained parameters | train accuracy | test accuracy | wall time | images/s |"
        " BN features with abs(gamma) < 0.05 |\n|---|---:|---:|---:|---:|---:|---:|\n";
  for (const VariantSummary& r : rows) {
    char line[512];
    std::snprintf(line, sizeof line, "%s,%lld,%.4f,%.4f,%.1f,%.1f,%.4f\n", r.variant.c_str(),
                  static_cast<long long>(r.trainable), r.train_accuracy, r.test_accuracy,
                  r.wall_seconds, r.images_per_second, r.gamma_off);
    csv << line;
    std::snprintf(line, sizeof line, "| %s | %lld | %.2f%% | %.2f%% | %.0f s | %.0f | %.1f%% |\n",
                  r.variant.c_str(), static_cast<long long>(r.trainable), 100 * r.train_accuracy,
                  100 * r.test_accuracy, r.wall_seconds, r.images_per_second, 100 * r.gamma_off);
    md << line;
  }
  md << "\nTrain accuracy is measured on the augmented training batches in train mode; test "
        "accuracy on the test images in eval mode (running statistics), as `minidl eval` prints "
        "it. Chance is 10%. Wall time is the sum of the epochs' times (training and evaluation).\n"
        "`bn`: only BatchNorm's weight (gamma) and bias (beta) learn; every convolution and the "
        "output layer keep their random initial values. `fc`: only the output layer learns. "
        "`random-per-channel`: two random convolution weights per output channel learn instead "
        "of BN's parameters (the paper's control).\n\nPlots: `accuracy.png` (test accuracy per "
        "epoch), `gammas.png` (histograms of the learned gammas, one panel per variant that "
        "trains them), `gammas_by_layer.png` (fraction of abs(gamma) < 0.05 per BN layer).\n";
  write_text_atomic(out + "/results.csv", csv.str());
  write_text_atomic(out + "/results.md", md.str());
  if (run_plot_script("plot_experiment.py", out, e.quiet) && !e.quiet) {
    std::printf("plots: %s/accuracy.png, gammas.png, gammas_by_layer.png\n", out.c_str());
  }
  if (!e.quiet) {
    std::printf("\n%s\nwritten: %s/results.md, %s/results.csv\n", md.str().c_str(), out.c_str(),
                out.c_str());
  }
}

bool run_experiment(const ExperimentConfig& e) {
  validate(e);
  fs::create_directories(e.out);
  int64_t budget = e.stop_after;
  std::vector<VariantSummary> rows;
  if (!run_variants(e, e.model, e.out, budget, rows)) {
    print_stopped(e, "bn-only");
    return false;
  }
  write_experiment_tables(e, e.model, e.out, rows);
  return true;
}

/// Depth and width of "resnet<D>[_<W>]" (W defaults to 16); {0, 0} for other names.
static std::pair<int, int> depth_and_width(const std::string& model) {
  std::smatch m;
  static const std::regex re("resnet(\\d+)(?:_(\\d+))?");
  if (!std::regex_match(model, m, re) || m[1].length() > 6 || m[2].length() > 6) return {0, 0};
  return {std::stoi(m[1]), m[2].matched ? std::stoi(m[2]) : 16};
}

bool run_sweep(const ExperimentConfig& e) {
  validate(e);
  if (e.models.empty()) throw std::invalid_argument("--models: give at least one model");
  fs::create_directories(e.out);
  int64_t budget = e.stop_after;
  std::ostringstream csv, md;
  csv << "model,depth,width,variant,trained_parameters,bn_parameters,epochs,train_accuracy,"
         "test_accuracy,wall_seconds,images_per_second,gamma_below_0.05\n";
  md << "# BN-only sweep: " << e.epochs << " epochs, recipe " << e.recipe << ", seed " << e.seed
     << "\n\n| model | depth | width | variant | trained parameters | test accuracy | train "
        "accuracy | wall time | BN features with abs(gamma) < 0.05 |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|\n";
  double total_seconds = 0.0;
  for (const std::string& model : e.models) {
    const std::string out = e.out + "/" + model;
    fs::create_directories(out);
    std::vector<VariantSummary> rows;
    if (!run_variants(e, model, out, budget, rows)) {
      print_stopped(e, "bn-only-sweep");
      return false;
    }
    write_experiment_tables(e, model, out, rows);
    const auto [depth, width] = depth_and_width(model);
    int64_t bn_parameters = 0;
    const std::shared_ptr<Module> net =
        load_model(out + "/" + e.variants[0] + "/model.safetensors");
    for (BatchNorm* bn : net->modules_of<BatchNorm>()) {
      if (bn->weight.defined()) bn_parameters += bn->weight.numel() + bn->bias.numel();
    }
    for (const VariantSummary& r : rows) {
      char line[512];
      std::snprintf(line, sizeof line, "%s,%d,%d,%s,%lld,%lld,%lld,%.4f,%.4f,%.1f,%.1f,%.4f\n",
                    model.c_str(), depth, width, r.variant.c_str(),
                    static_cast<long long>(r.trainable), static_cast<long long>(bn_parameters),
                    static_cast<long long>(r.epochs), r.train_accuracy, r.test_accuracy,
                    r.wall_seconds, r.images_per_second, r.gamma_off);
      csv << line;
      std::snprintf(
          line, sizeof line, "| %s | %d | %d | %s | %lld | %.2f%% | %.2f%% | %.0f min | %.1f%% |\n",
          model.c_str(), depth, width, r.variant.c_str(), static_cast<long long>(r.trainable),
          100 * r.test_accuracy, 100 * r.train_accuracy, r.wall_seconds / 60, 100 * r.gamma_off);
      md << line;
      total_seconds += r.wall_seconds;
    }
  }
  char total[128];
  std::snprintf(total, sizeof total, "\nTotal wall time of the epochs: %.1f h.\n",
                total_seconds / 3600);
  md << total
     << "Every model is one `minidl experiment bn-only` run in its own folder (results.md, "
        "plots). `sweep.png`: test accuracy against depth and width, with the paper's 160-epoch "
        "values (Frankle, Schwab & Morcos 2021, Figure 2) as reference markers.\n";
  write_text_atomic(e.out + "/results.csv", csv.str());
  write_text_atomic(e.out + "/results.md", md.str());
  if (run_plot_script("plot_sweep.py", e.out, e.quiet) && !e.quiet) {
    std::printf("plot: %s/sweep.png\n", e.out.c_str());
  }
  if (!e.quiet)
    std::printf("\n%s\nwritten: %s/results.md, %s/results.csv\n", md.str().c_str(), e.out.c_str(),
                e.out.c_str());
  return true;
}

}  // namespace minidl::app
