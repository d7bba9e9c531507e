// The BN-only experiment and its sweep (experiments/bn_only.hpp).
#include "experiments/bn_only.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "core/file_io.hpp"
#include "core/safetensors.hpp"
#include "layers/batch_norm.hpp"
#include "optim/freeze.hpp"

namespace minidl::experiments {

namespace fs = std::filesystem;
using json = nlohmann::json;

train::TrainOptions variant_options(const BnOnlyConfig& e, const std::string& model,
                                    optim::TrainOnly variant, const std::string& out) {
  train::TrainOptions c;
  if (e.recipe == train::Recipe::kFrankle2021) {
    // open_lth's cifar_resnet defaults (train/options.hpp); with epochs E the milestones move
    // to E/2 and 3E/4: the schedule is compressed in proportion.
    c = train::frankle2021_options(e.epochs);
    c.recipe = train::Recipe::kDefault;  // its runs save every field (no "recipe" key)
  } else if (e.recipe == train::Recipe::kBnSpeedrun) {
    // Its optimizer, schedule, batch and data settings; the model and epochs are the
    // experiment's, and every epoch is evaluated (the curves).
    c = train::bn_speedrun_options();
    c.eval_every_epoch = true;
  } else if (e.recipe != train::Recipe::kDefault) {
    throw std::invalid_argument("recipe must be default, frankle2021 or bn-speedrun, got " +
                                name_of(e.recipe));
  }
  c.data = e.data;
  c.model = model;
  c.epochs = static_cast<double>(e.epochs);
  c.seed = e.seed;
  c.threads = e.threads;
  c.limit_train = e.limit_train;
  c.limit_test = e.limit_test;
  c.train_only = variant;
  c.out = out;
  c.bn_sync = e.bn_sync;
  return c;
}

void check_same_config(const std::string& dir, const train::TrainOptions& c) {
  const std::string path = dir + "/config.json";
  json saved;
  try {
    saved = train::config_to_json(train::read_config(path));
  } catch (const std::runtime_error& e) {
    throw train::ResumeError(e.what());
  }
  json want = train::config_to_json(c);
  for (const char* key : {"data", "out", "threads"}) {
    saved.erase(key);
    want.erase(key);
  }
  for (auto& [key, value] : want.items()) {
    if (saved[key] != value) {
      throw train::ResumeError("\"" + path + "\" was trained with " + key + " = " +
                               saved[key].dump() + ", this experiment asks for " + value.dump() +
                               " (use another output folder, or the same settings)");
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
static VariantSummary summarize(const std::string& dir, const train::TrainOptions& c) {
  VariantSummary s;
  s.variant = name_of(c.train_only);
  double inverse_rate = 0.0;  // sum over epochs of 1 / images_per_second
  for (const train::MetricsRow& r : train::read_metrics(dir + "/metrics.csv")) {
    s.train_accuracy = r.train_accuracy;
    s.test_accuracy = r.test_accuracy.value_or(0.0);
    s.wall_seconds += r.seconds;
    inverse_rate += 1.0 / std::max(r.images_per_second, 1e-9);
    ++s.epochs;
  }
  if (s.epochs == 0) throw std::runtime_error("\"" + dir + "/metrics.csv\" has no epochs");
  s.images_per_second = s.epochs / inverse_rate;  // every epoch has the same number of images

  std::shared_ptr<Module> model = train::load_model(dir + "/model.safetensors");
  const std::vector<optim::UpdateMask> masks =
      optim::apply_train_only(*model, c.train_only, c.seed);
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
  write_file_atomic(dir + "/gammas.csv", g.str());
  return s;
}

/// Whether this process writes the tables (rank 0, or no group).
static bool rank0(const BnOnlyConfig& e) { return !e.group || e.group->rank() == 0; }

/// Trains (or continues) every variant of `model` in `out`/<variant>/, spending at most
/// `budget` epochs (-1: no limit; decremented by the epochs trained). Appends one row per
/// finished variant to `rows`; returns false when the budget ran out before all finished.
static bool run_variants(const BnOnlyConfig& e, const std::string& model, const std::string& out,
                         int64_t& budget, std::vector<VariantSummary>& rows) {
  for (optim::TrainOnly variant : e.variants) {
    const train::TrainOptions c = variant_options(e, model, variant, out + "/" + name_of(variant));
    // Rank 0's run directory decides (the others may not share its file system).
    auto epochs_done = [&] {
      uint64_t d = rank0(e) ? static_cast<uint64_t>(train::checkpoint_epoch(c.out)) : 0;
      if (e.group) e.group->broadcast(&d, 1, 0);
      return static_cast<int64_t>(d);
    };
    int64_t done = epochs_done();
    if (done > 0 && !e.resume) {
      throw std::runtime_error("\"" + c.out + "\" already holds a run (" + std::to_string(done) +
                               " epochs); continue it (resume), or use another output folder");
    }
    if (done > 0) {  // rank 0 checks; every process stops if it refuses
      uint64_t ok = 1;
      std::string why;
      if (rank0(e)) {
        try {
          check_same_config(c.out, c);
        } catch (const train::ResumeError& err) {
          ok = 0;
          why = err.what();
        }
      }
      if (e.group) e.group->broadcast(&ok, 1, 0);
      if (!ok) throw train::ResumeError(rank0(e) ? why : "rank 0 refused to continue the run");
    }
    if (done < c.epochs) {
      if (budget == 0) return false;
      if (e.on_variant_start) e.on_variant_start(model, variant, done);
      train::Trainer trainer(c, e.callbacks);
      if (e.group) trainer.set_process_group(e.group);
      const train::RunResult r = trainer.fit(done > 0, budget);
      if (budget > 0) budget -= r.epochs_run;
      done = epochs_done();
      if (done < c.epochs) return false;
    }
    if (rank0(e)) rows.push_back(summarize(c.out, c));
  }
  return true;
}

static void validate(const BnOnlyConfig& e) {
  if (e.epochs < 1)
    throw std::invalid_argument("epochs must be >= 1, got " + std::to_string(e.epochs));
  if (e.stop_after == 0 || e.stop_after < -1)
    throw std::invalid_argument("stop_after must be >= 1, got " + std::to_string(e.stop_after));
  if (e.variants.empty()) throw std::invalid_argument("variants: give at least one variant");
  variant_options(e, e.model, e.variants[0], e.out);  // checks the recipe
}

/// Writes `out`/results.csv and results.md for one model's variants; returns the markdown.
static std::string write_experiment_tables(const BnOnlyConfig& e, const std::string& model,
                                           const std::string& out,
                                           const std::vector<VariantSummary>& rows) {
  std::ostringstream csv, md;
  csv << "variant,trained_parameters,train_accuracy,test_accuracy,wall_seconds,images_per_second,"
         "gamma_below_0.05\n";
  md << "# BN-only experiment: " << model << ", " << e.epochs << " epochs, recipe "
     << name_of(e.recipe) << ", seed " << e.seed << "\n\n"
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
  const bool augmented = variant_options(e, model, e.variants[0], out).augment;
  md << "\nTrain accuracy is measured on the " << (augmented ? "augmented " : "")
     << "training batches in train mode; test "
        "accuracy on the test images in eval mode (running statistics), as `minidl eval` prints "
        "it. Chance is 10%. Wall time is the sum of the epochs' times (training and evaluation).\n"
        "`bn`: only BatchNorm's weight (gamma) and bias (beta) learn; every convolution and the "
        "output layer keep their random initial values. `fc`: only the output layer learns. "
        "`random-per-channel`: two random convolution weights per output channel learn instead "
        "of BN's parameters (the paper's control).\n\nPlots: `accuracy.png` (test accuracy per "
        "epoch), `gammas.png` (histograms of the learned gammas, one panel per variant that "
        "trains them), `gammas_by_layer.png` (fraction of abs(gamma) < 0.05 per BN layer), "
        "`gammas_per_layer.png` (box plots of each BN layer's gammas).\n";
  write_file_atomic(out + "/results.csv", csv.str());
  write_file_atomic(out + "/results.md", md.str());
  return md.str();
}

BnOnlyReport run_bn_only(const BnOnlyConfig& e) {
  validate(e);
  fs::create_directories(e.out);
  int64_t budget = e.stop_after;
  std::vector<VariantSummary> rows;
  BnOnlyReport report;
  if (!run_variants(e, e.model, e.out, budget, rows)) return report;
  report.finished = true;
  if (!rank0(e)) return report;
  report.markdown = write_experiment_tables(e, e.model, e.out, rows);
  report.tables.push_back(e.out);
  return report;
}

/// Depth and width of "resnet<D>[_<W>]" (W defaults to 16); {0, 0} for other names.
static std::pair<int, int> depth_and_width(const std::string& model) {
  std::smatch m;
  static const std::regex re("resnet(\\d+)(?:_(\\d+))?");
  if (!std::regex_match(model, m, re) || m[1].length() > 6 || m[2].length() > 6) return {0, 0};
  return {std::stoi(m[1]), m[2].matched ? std::stoi(m[2]) : 16};
}

BnOnlyReport run_bn_only_sweep(const BnOnlyConfig& e) {
  validate(e);
  if (e.models.empty()) throw std::invalid_argument("models: give at least one model");
  BnOnlyReport report;
  fs::create_directories(e.out);
  int64_t budget = e.stop_after;
  std::ostringstream csv, md;
  csv << "model,depth,width,variant,trained_parameters,bn_parameters,epochs,train_accuracy,"
         "test_accuracy,wall_seconds,images_per_second,gamma_below_0.05\n";
  md << "# BN-only sweep: " << e.epochs << " epochs, recipe " << name_of(e.recipe) << ", seed "
     << e.seed
     << "\n\n| model | depth | width | variant | trained parameters | test accuracy | train "
        "accuracy | wall time | BN features with abs(gamma) < 0.05 |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|\n";
  double total_seconds = 0.0;
  for (const std::string& model : e.models) {
    const std::string out = e.out + "/" + model;
    fs::create_directories(out);
    std::vector<VariantSummary> rows;
    if (!run_variants(e, model, out, budget, rows)) return report;
    if (!rank0(e)) continue;
    write_experiment_tables(e, model, out, rows);
    report.tables.push_back(out);
    const auto [depth, width] = depth_and_width(model);
    int64_t bn_parameters = 0;
    const std::shared_ptr<Module> net =
        train::load_model(out + "/" + name_of(e.variants[0]) + "/model.safetensors");
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
  report.finished = true;
  if (!rank0(e)) return report;
  char total[128];
  std::snprintf(total, sizeof total, "\nTotal wall time of the epochs: %.1f h.\n",
                total_seconds / 3600);
  md << total
     << "Every model is one `minidl experiment bn-only` run in its own folder (results.md, "
        "plots). `sweep.png`: test accuracy against depth and width, with the paper's 160-epoch "
        "values (Frankle, Schwab & Morcos 2021, Figure 2) as reference markers.\n";
  write_file_atomic(e.out + "/results.csv", csv.str());
  write_file_atomic(e.out + "/results.md", md.str());
  report.tables.push_back(e.out);
  report.markdown = md.str();
  return report;
}

}  // namespace minidl::experiments
