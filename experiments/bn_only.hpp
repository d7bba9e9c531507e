// minidl — the freeze-all-but-BatchNorm experiment (Frankle, Schwab & Morcos, "Training
// BatchNorm and Only BatchNorm", ICLR 2021): the same model, seed and recipe trained several
// ways (all, bn, fc, bn+fc, random-per-channel: optim/freeze.hpp), then a table, per-epoch
// curves and the learned gammas; and the sweep of that experiment over models (accuracy against
// depth and width, the paper's Figure 2).
//
// Every variant is an ordinary run directory, OUT/<variant>/ (OUT/<model>/<variant>/ in a
// sweep), trained by the Trainer. The tables are computed from those directories
// (metrics.csv, model.safetensors), never from memory, so an experiment split into pieces, or a
// variant trained by hand with the same options, gives the same table.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/trainer.hpp"

namespace minidl::experiments {

struct BnOnlyConfig {
  std::string data;  ///< CIFAR-10 binary directory
  std::string out = "runs/bn-only";
  std::string model = "resnet14";
  /// The sweep: the models, each run as one bn-only experiment in OUT/<model>/.
  std::vector<std::string> models = {"resnet14", "resnet32", "resnet56", "resnet14_32"};
  int64_t epochs = 15;
  uint64_t seed = 0;
  /// default, frankle2021 or bn-speedrun: the settings of every variant but the model, the
  /// epochs and which parameters learn (train::bn_speedrun_options's own model and epochs are
  /// not used: `model` and `epochs` are).
  train::Recipe recipe = train::Recipe::kDefault;
  int threads = 2;
  int64_t limit_train = -1, limit_test = -1;
  std::vector<optim::TrainOnly> variants = {optim::TrainOnly::kAll, optim::TrainOnly::kBn,
                                            optim::TrainOnly::kFc, optim::TrainOnly::kBnFc,
                                            optim::TrainOnly::kRandomPerChannel};
  /// Train at most this many epochs in this call, summed over variants (and models); -1: no
  /// limit. The schedule still spans `epochs`; continue with `resume`.
  int64_t stop_after = -1;
  /// Continue the experiment in `out`: finished variants are kept, a partial one continues from
  /// its last epoch. Its config.json must be the one this call would write (data, out and
  /// threads may differ); otherwise std::runtime_error names the file and the field.
  bool resume = false;
  /// Passed to every variant's Trainer (printing, progress).
  train::Callbacks callbacks;
  /// Data parallelism: every variant trains over this group (null: one process); only rank 0
  /// writes the tables.
  std::shared_ptr<dist::ProcessGroup> group;
  train::BnSync bn_sync = train::BnSync::kNone;
  /// Before each variant trains: (model, variant, epochs already done).
  std::function<void(const std::string&, optim::TrainOnly, int64_t)> on_variant_start;
};

/// The options of one variant's run: the recipe for `model` over cfg.epochs (frankle2021's
/// milestones scale with the epoch count; bn-speedrun's run evaluates every epoch), train_only =
/// `variant`, out OUT/<variant>. Throws std::invalid_argument for airbench94.
train::TrainOptions variant_options(const BnOnlyConfig& cfg, const std::string& model,
                                    optim::TrainOnly variant, const std::string& out);

/// Refuses to continue `dir` unless its config.json holds `c` (data, out and threads aside):
/// throws train::ResumeError naming the file and the first differing field. Every experiment
/// that continues its run directories uses it.
void check_same_config(const std::string& dir, const train::TrainOptions& c);

/// What an experiment wrote.
struct BnOnlyReport {
  bool finished = false;  ///< false: stop_after ran out first (no table was written)
  /// The folders that got results.csv and results.md (each model's; and OUT for the sweep).
  std::vector<std::string> tables;
  std::string markdown;  ///< the last table's results.md text
};

/// `experiment bn-only`: trains cfg.variants of cfg.model, each in OUT/<variant>/ (a run
/// directory plus gammas.csv), then writes OUT/results.csv and OUT/results.md. Throws
/// std::invalid_argument naming the field (epochs, stop_after, variants, recipe) for a bad
/// setting and std::runtime_error when OUT/<variant>/ already holds a run and `resume` is not
/// set.
BnOnlyReport run_bn_only(const BnOnlyConfig& cfg);

/// `experiment bn-only-sweep`: one bn-only experiment per model in OUT/<model>/, then
/// OUT/results.csv (one row per model and variant, with depth and width) and OUT/results.md.
BnOnlyReport run_bn_only_sweep(const BnOnlyConfig& cfg);

}  // namespace minidl::experiments
