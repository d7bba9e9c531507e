// minidl — the CLI's subcommands as functions (apps/main.cpp maps flags onto these structs).
// Each run_* throws on bad input with a message naming the flag or file; main prints it on one
// line and exits with status 1.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "data/loader.hpp"
#include "optim/schedule.hpp"

namespace minidl::app {

/// The values of the CLI's choice flags, each listed once (main.cpp's checks and help texts and
/// the run_* validations read them here; the library's own lists are optim::train_only_modes,
/// optim::schedule_kinds, optim::optimizer_names, data::normalization_names, bn_init_names).
inline const std::vector<std::string>& train_bn_stats_modes() {  ///< train --bn-stats
  static const std::vector<std::string> v = {"batch", "running"};
  return v;
}
/// train --schedule: optim::schedule_kinds() but piecewise, whose knots are set in code
/// (optim::Schedule::knots), not by a flag.
inline const std::vector<std::string>& train_schedule_kinds() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> kinds;
    for (const std::string& k : optim::schedule_kinds())
      if (k != "piecewise") kinds.push_back(k);
    return kinds;
  }();
  return v;
}
inline const std::vector<std::string>& eval_bn_stats_modes() {  ///< eval --bn-stats
  static const std::vector<std::string> v = {"running", "population", "batch"};
  return v;
}
inline const std::vector<std::string>& bench_modes() {  ///< bench --mode
  static const std::vector<std::string> v = {"train", "eval"};
  return v;
}
inline const std::vector<std::string>& experiment_recipes() {  ///< experiment --recipe
  static const std::vector<std::string> v = {"default", "frankle2021"};
  return v;
}
inline const std::vector<std::string>& experiment_names() {  ///< experiment NAME
  static const std::vector<std::string> v = {"bn-only", "bn-only-sweep", "landscape",
                                             "covariate-shift"};
  return v;
}
/// "a, b or c" (for error messages).
inline std::string choices_text(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i)
    s += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + v[i];
  return s;
}
/// true when `value` is one of `v`.
inline bool is_one_of(const std::string& value, const std::vector<std::string>& v) {
  for (const std::string& x : v) {
    if (x == value) return true;
  }
  return false;
}

inline const std::vector<std::string>& train_recipes() {  ///< train --recipe
  static const std::vector<std::string> v = {"default", "airbench94"};
  return v;
}

/// `minidl train`. The defaults are the default recipe (README, "The default recipe").
struct TrainConfig {
  std::string data;  ///< CIFAR-10 binary directory (--data or $MINIDL_DATA)
  std::string model = "resnet20";
  int64_t epochs = 30;
  int64_t batch_size = 128;
  std::string optimizer = "sgd";  ///< sgd | adam | adamw
  float lr = 0.1f;
  float momentum = 0.9f;
  bool nesterov = true;
  float weight_decay = 5e-4f;
  std::string schedule = "onecycle";  ///< constant | multistep | cosine | onecycle
  /// Linear warm-up length in epochs (fractions allowed); < 0: 15% of the run.
  double warmup_epochs = -1.0;
  std::vector<double> milestones;  ///< multistep: epochs where lr is multiplied by gamma
  float gamma = 0.1f;
  float label_smoothing = 0.1f;
  bool augment = true;  ///< random crop 32 (pad 4) + horizontal flip
  /// Input normalization (data::normalization_named): cifar10 | imagenet. Saved in the
  /// checkpoint's metadata ("normalization"); eval, predict and recalibrate-bn read it there.
  std::string normalize = "cifar10";
  uint64_t seed = 0;
  int threads = 2;
  int64_t limit_train = -1;         ///< use the first N training images (-1: all 50,000)
  int64_t limit_test = -1;          ///< evaluate on the first N test images (-1: all 10,000)
  std::string out = "runs/latest";  ///< RUN_DIR
  std::string resume;               ///< RUN_DIR to continue
  std::string bn_init = "fixed";    ///< fixed | uniform
  /// Which parameters learn: all | bn | fc | bn+fc | random-per-channel (optim/freeze.hpp).
  std::string train_only = "all";
  /// BN statistics while training: batch (train-mode BN, the default) | running (inference-
  /// mode BN: the running buffers normalize and are never updated, as Keras does for a layer
  /// with trainable = False). Independent of --train-only.
  std::string bn_stats = "batch";
  bool quiet = false;               ///< no per-epoch lines (tests)
  bool epochs_set_by_user = false;  ///< with --resume: --epochs overrides the saved value
  /// Stop this invocation after N epochs (-1: run to --epochs); the schedule still spans
  /// --epochs, so `--stop-after` then `--resume` equals one uninterrupted run.
  int64_t stop_after = -1;
  /// Profile the first epoch of this invocation (core/profiler.hpp) and print the per-op table
  /// to stdout after it (total: that epoch's training loop, evaluation excluded). Not saved in
  /// config.json.
  bool profile = false;
};

/// Result of a training run (also written to RUN_DIR).
struct TrainResult {
  double final_test_accuracy = 0.0;
  double final_test_loss = 0.0;
  double final_train_accuracy = 0.0;
  double seconds = 0.0;
  int64_t epochs_run = 0;
  int64_t trainable_parameters = 0;  ///< parameter elements that learned
  double images_per_second = 0.0;    ///< mean training throughput
};

TrainResult run_train(const TrainConfig& cfg);

/// A TrainConfig as RUN_DIR/config.json holds it (every field but quiet, resume, stop_after,
/// profile and epochs_set_by_user), and back; missing keys keep TrainConfig's defaults.
nlohmann::json config_to_json(const TrainConfig& c);
/// Throws std::runtime_error naming the key and the expected type for a wrong-typed value, or
/// when `j` is not an object. Unknown keys are ignored.
TrainConfig config_from_json(const nlohmann::json& j);
/// Reads a RUN_DIR/config.json: size (< 1 MiB) and nesting checked before parsing, then
/// config_from_json. Throws std::runtime_error naming `path` and what is wrong.
TrainConfig read_config_file(const std::string& path);

/// `minidl train --recipe airbench94` (apps/cmd_airbench.cpp): Keller Jordan's airbench94
/// ("94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv 2404.00498; legacy/airbench94.py)
/// on the model `airbench94` (layers/models/airbench.hpp). Every hyperparameter is the
/// recipe's; the fields below are what a run may choose.
struct AirbenchConfig {
  std::string data;                     ///< CIFAR-10 binary directory (--data or $MINIDL_DATA)
  std::string out = "runs/airbench94";  ///< RUN_DIR
  uint64_t seed = 0;                    ///< init, order, augmentation
  int tta = 2;                          ///< test-time augmentation level of the final evaluation
  int threads = 2;
  /// Training length in epochs (fractions allowed; the recipe's 9.9). Tests shorten it.
  double epochs = 9.9;
  /// Images per batch (the recipe's 1024). lr and weight decay follow it as airbench's
  /// decoupled hyperparameters do (per 1,024 examples).
  int64_t batch_size = 1024;
  int64_t limit_train = -1, limit_test = -1;  ///< first N images (-1: all)
  /// Test accuracy (no TTA) after every epoch, as airbench94's log prints it (--eval-every-epoch).
  /// Off by default: airbench94 leaves those passes out of its time, and they cost 10 test passes
  /// (about 3.5 min on 2 cores); the final epoch is always evaluated, with and without TTA.
  bool eval_every_epoch = false;
  bool quiet = false;
};

/// What an airbench94 run measured (also in RUN_DIR/results.json).
struct AirbenchResult {
  double accuracy = 0.0;       ///< test accuracy of the final (EMA) weights, no TTA
  double accuracy_tta = 0.0;   ///< the same with AirbenchConfig::tta
  double train_seconds = 0.0;  ///< whitening init + training steps
  double eval_seconds = 0.0;   ///< every evaluation (per epoch and final)
  double total_seconds = 0.0;  ///< wall time of the whole run, loading included
  int64_t steps = 0;
};

/// The DataLoader options of the recipe's training set: batches of `batch_size` (incomplete
/// ones dropped, as airbench's loader does), shuffled, augmented with
/// data::AugmentScheme::kTranslateAlternatingFlip (translate 2), CIFAR-10 normalization, the
/// order and the draws seeded by `seed`. run_airbench94 trains on exactly these, so
/// data::make_epoch_plan(N, airbench94_loader_options(b, s), e) is its epoch e.
data::LoaderOptions airbench94_loader_options(int64_t batch_size, uint64_t seed);

/// Trains airbench94 and writes RUN_DIR/metrics.csv, model.safetensors (the final weights,
/// which the last lookahead update set to the EMA), results.json and config.json. Throws
/// std::invalid_argument for a bad setting (naming the flag) and std::runtime_error when
/// training diverges.
AirbenchResult run_airbench94(const AirbenchConfig& cfg);

struct EvalConfig {
  std::string checkpoint;
  std::string data;
  int64_t batch_size = 1000;
  bool json = false;
  int threads = 2;
  int64_t limit = -1;
  /// running: inference mode (the running averages) | population: statistics recalibrated
  /// over the training set first (recalibrate-bn) | batch: each test batch's own statistics
  std::string bn_stats = "running";
  int64_t recalibrate_limit = -1;  ///< population: first N training images (-1: all)
  /// Evaluate a checkpoint holding NaN or infinity (refused otherwise, naming the tensor).
  bool allow_nonfinite = false;
  /// Test-time augmentation: 0 none | 1 image and mirror | 2 mirror and one-pixel translations
  /// (engine.hpp, tta_logits).
  int tta = 0;
};
/// Prints the evaluation and returns the accuracy (0..1).
double run_eval(const EvalConfig& cfg);

struct PredictConfig {
  std::string checkpoint;
  std::vector<std::string> images;
  int64_t top = 3;
  int threads = 2;
};
void run_predict(const PredictConfig& cfg);

/// `minidl bench`: times `steps` steps after `warmup` untimed ones on random [batch_size, 3, 32,
/// 32] images and prints images/s, seconds per step (forward, backward) and the peak RSS: one
/// line, or one JSON object with `json`.
struct BenchConfig {
  std::string model = "resnet20";
  int64_t batch_size = 128;  ///< >= 2 in train mode (BatchNorm training), >= 1 in eval mode
  int64_t steps = 20;        ///< >= 1
  int64_t warmup = 3;        ///< >= 0
  int threads = 2;
  bool json = false;
  std::string train_only = "all";
  /// train: forward, cross-entropy, zero_grad, backward, SGD step, BN in train mode |
  /// eval: model.eval() forward under NoGradGuard only (no loss, no backward)
  std::string mode = "train";
  /// Print the per-op profiler table of the timed steps (core/profiler.hpp) after the result:
  /// to stdout, or to stderr with `json` so stdout stays one JSON object.
  bool profile = false;
};
/// Throws std::invalid_argument naming the flag for a bad --mode, --batch-size, --steps or
/// --warmup, and create_model's error for an unknown --model.
void run_bench(const BenchConfig& cfg);

/// `minidl bn-stats`: per BN layer, mean/std/min/max of weight, bias, running_mean, running_var.
void run_bn_stats(const std::string& checkpoint);

struct RecalibrateConfig {
  std::string checkpoint, data, out;
  int64_t batch_size = 500;
  int64_t limit = -1;  ///< first N training images (-1: all 50,000)
  int threads = 2;
};
/// `minidl recalibrate-bn`: population statistics over the training set, saved as a new
/// checkpoint (atomically).
void run_recalibrate(const RecalibrateConfig& cfg);

/// `minidl experiment bn-only` and `bn-only-sweep` (apps/cmd_experiment.cpp).
struct ExperimentConfig {
  std::string data, out = "runs/bn-only", model = "resnet14";
  /// bn-only-sweep: the models, each run as one bn-only experiment in OUT/<model>/
  std::vector<std::string> models = {"resnet14", "resnet32", "resnet56", "resnet14_32"};
  int64_t epochs = 15;
  uint64_t seed = 0;
  std::string recipe = "default";  ///< default | frankle2021
  int threads = 2;
  int64_t limit_train = -1, limit_test = -1;
  std::vector<std::string> variants = {"all", "bn", "fc", "bn+fc", "random-per-channel"};
  /// Train at most this many epochs in this invocation, summed over variants (and models);
  /// -1: no limit. The schedule still spans --epochs; continue with `resume`.
  int64_t stop_after = -1;
  /// Continue the experiment in `out`: finished variants are kept, a partial one continues from
  /// its last epoch. Its config.json must be the one this invocation would write (data, out
  /// and threads may differ); otherwise std::runtime_error names the file and the field.
  bool resume = false;
  bool quiet = false;
};

/// `minidl experiment bn-only`: trains `variants` of `model` with one seed and recipe, each in
/// OUT/<variant>/ (a `minidl train` run directory plus gammas.csv), then writes OUT/results.csv,
/// OUT/results.md and the plots (scripts/plot_experiment.py). Returns false when `stop_after`
/// ran out before every variant finished (no table is written then). Throws
/// std::invalid_argument for bad flags and std::runtime_error when OUT/<variant>/ already holds
/// a run and `resume` is not set.
bool run_experiment(const ExperimentConfig& cfg);

/// `minidl experiment bn-only-sweep`: one bn-only experiment per model in OUT/<model>/, then
/// OUT/results.csv (one row per model and variant, with depth and width), OUT/results.md and
/// OUT/sweep.png (scripts/plot_sweep.py: accuracy against depth and width with the paper's
/// 160-epoch values as reference markers). Returns false when `stop_after` ran out first.
bool run_sweep(const ExperimentConfig& cfg);

/// `minidl experiment landscape` and `minidl experiment covariate-shift` (apps/cmd_why_bn.cpp,
/// Santurkar et al. 2018). Every run: apps/why_bn.hpp's ProbedRunConfig (plain SGD, constant lr).
struct WhyBnConfig {
  std::string data, out;  ///< out: docs-style folder, default runs/landscape | runs/covariate-shift
  /// The network without BN: vgg11 or vgg11_w<k>; the BN (vgg11_bn...) and noisy-BN
  /// (vgg11_noisybn...) networks are derived from it and share its initial conv weights.
  std::string model = "vgg11_w4";
  /// landscape: standard bn; covariate-shift: standard bn noisy-bn (any subset, in that order)
  std::vector<std::string> variants;
  std::vector<float> lrs = {0.1f};  ///< one run per variant and learning rate
  int64_t epochs = -1;              ///< -1: the experiment's default (README)
  int64_t batch_size = 128;
  float momentum = 0.0f, weight_decay = 0.0f;
  int64_t probes = 50;  ///< measurements spread evenly over each run
  /// landscape: step sizes as multiples of the run's lr
  std::vector<double> eta_factors = {0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0};
  int64_t layer = 3;  ///< covariate-shift: the conv block whose pre-activations are recorded
  uint64_t seed = 0;
  int threads = 2;
  int64_t limit_train = -1, limit_test = -1;
  bool quiet = false;
};
/// Trains each variant at each lr with landscape probes; writes OUT/metrics.csv,
/// OUT/landscape.csv (one row per probe and step size), OUT/smoothness.csv (one row per probe),
/// OUT/results.md and the plots (scripts/plot_why_bn.py). Throws std::invalid_argument for bad
/// flags (naming the flag).
void run_landscape(const WhyBnConfig& cfg);
/// Trains each variant at each lr with covariate-shift and activation probes; writes
/// OUT/metrics.csv, OUT/activations.csv, OUT/covariate_shift.csv, OUT/results.md and the plots.
void run_covariate_shift(const WhyBnConfig& cfg);

}  // namespace minidl::app
