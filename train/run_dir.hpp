// minidl — the run directory, one owner per file format. A run directory RUN_DIR holds:
//   config.json              the run's TrainOptions (config_to_json below)
//   train_state.safetensors  everything --resume needs, rewritten after every epoch: the epoch's
//                            commit point (save_train_state)
//   model.safetensors        the model's state_dict and metadata (save_checkpoint): what eval,
//                            predict and bn-stats read, and what safetensors.torch.load_file reads
//   metrics.csv              one row per epoch, the same named columns for every recipe
//   log.jsonl                one JSON object per training step and one per epoch (format_*_record)
//   results.json             the run's numbers at the end of each invocation (write_results)
//   train.log                the lines the CLI printed (apps/, not written here)
//   accuracy.png, loss.png   the curves the CLI draws at the end (scripts/plot_run.py)
//   run.lock                 locked (flock) by the process training the run (RunLock), holds
//                            its pid
// Every file but the two logs is written atomically (core/file_io.hpp): a kill at any moment
// leaves each file whole; the logs are appended line by line. config.json is written at the run's
// first commit point, with the first epoch's state, so a run that fails before (or a second start
// refused) leaves the folder as it was. Nothing else in minidl parses these files; readers check
// every field and throw std::runtime_error naming the file and the entry.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/file_io.hpp"
#include "core/safetensors.hpp"
#include "layers/module.hpp"
#include "optim/optimizer.hpp"
#include "train/loop.hpp"
#include "train/options.hpp"

namespace minidl::train {

// ---- config.json ----------------------------------------------------------------------------

/// The options as config.json holds them. airbench94 saves {"recipe": "airbench94"} and the
/// fields a run may choose (data, seed, tta, threads, epochs, batch_size, limit_train,
/// limit_test, eval_every_epoch); bn-speedrun saves {"recipe": "bn-speedrun"}, every field of
/// the list in run_dir.cpp (for_each_field) and eval_every_epoch; every other recipe saves every
/// field of the list and no "recipe" key, so that config.json and the checkpoint metadata are
/// byte-identical to those of minidl before recipes were named. tta (for the recipes but
/// airbench94), bn_sync, reduction, bn_group_size, norm and gn_groups are saved only when not
/// their default, for the same reason.
/// Enums are saved by name, epochs as an integer (airbench94: as a number), float settings as
/// the shortest decimal that reads back as the same float (shortest_decimal: "lr": 0.1).
nlohmann::json config_to_json(const TrainOptions& o);

/// The double of the shortest decimal (at most 9 significant digits) that reads back as `v`:
/// 0.1f -> 0.1, not 0.10000000149011612. How a float setting typed as 0.1 is written to JSON.
double shortest_decimal(float v);
/// The inverse of config_to_json; missing keys keep the recipe's values. Throws
/// std::runtime_error naming the key and the expected type or names. Unknown keys are ignored.
TrainOptions config_from_json(const nlohmann::json& j);
/// Reads RUN_DIR/config.json: size (< 1 MiB) and nesting (<= 8) checked before parsing, then
/// config_from_json. Throws std::runtime_error naming `path` and what is wrong.
TrainOptions read_config(const std::string& path);
/// Writes config_to_json(o) to `path` (2-space indent, a final newline).
void write_config(const std::string& path, const TrainOptions& o);

/// One setting on which two configurations differ: its config.json key and each value as text
/// (floats as %g; a field config.json leaves out shows its default).
struct ConfigDifference {
  std::string key, saved, given;
};
/// Every setting config.json can hold (every recipe's, the defaults included) on which `saved`
/// and `given` differ, in config.json's order. Never throws.
std::vector<ConfigDifference> config_differences(const TrainOptions& saved,
                                                 const TrainOptions& given);

// ---- run.lock -------------------------------------------------------------------------------

/// Thrown when another process holds the run directory's lock.
struct RunInUse : std::runtime_error {
  RunInUse(const std::string& what, long holder) : std::runtime_error(what), holder_pid(holder) {}
  long holder_pid;  ///< -1 when the holder's pid could not be read
};
/// Thrown when a new run would replace a run already in its directory.
struct RunExists : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The exclusive lock of a run directory (RUN_DIR/run.lock, core/file_io.hpp FileLock), held by
/// the one process that trains the run for as long as it runs; the kernel releases it however
/// the process ends. Taking it creates RUN_DIR if needed and removes the temporaries a killed
/// writer left (core/file_io.hpp remove_stale_temporaries).
class RunLock {
 public:
  /// Throws RunInUse "run directory \"D\" is in use by another process (pid N holds
  /// \"D/run.lock\")", and std::runtime_error naming the folder when it cannot be created or the
  /// lock file cannot be written.
  explicit RunLock(const std::string& run_dir);

 private:
  std::unique_ptr<FileLock> lock_;
};

/// The files of a run that exist in `run_dir`, among config.json, train_state.safetensors,
/// model.safetensors, metrics.csv, results.json, log.jsonl and train.log (empty: no run there).
/// Never throws.
std::vector<std::string> run_files(const std::string& run_dir);

/// Creates a new, empty run folder PARENT/MODEL-YYYYmmdd-HHMMSS (local time of `when`; PARENT
/// created if needed), or with -2, -3, ... appended when that name exists: each name is taken
/// with mkdir(2), which fails on any existing name, so an existing folder is never reused or
/// replaced, and two processes starting in the same second get two folders. Characters of
/// `model` other than letters, digits, '.', '_' and '-' become '_'. Returns the folder's path.
/// Throws std::runtime_error naming the folder when it cannot be created.
std::string create_run_dir(const std::string& parent, const std::string& model, int64_t when);

// ---- metrics.csv ----------------------------------------------------------------------------

/// One epoch of metrics.csv. Columns, in order: epoch, train_loss, train_accuracy, test_loss,
/// test_accuracy, lr, seconds, images_per_second. Accuracies are fractions; a test column is
/// empty when the epoch was not evaluated (airbench94 evaluates the last epoch only). lr is the
/// epoch's first step's; seconds the epoch's wall time with its evaluation; images_per_second
/// the training loop's alone.
struct MetricsRow {
  int64_t epoch = 0;  ///< 1-based
  double train_loss = 0, train_accuracy = 0;
  std::optional<double> test_loss, test_accuracy;
  double lr = 0, seconds = 0, images_per_second = 0;
};
/// The header line, with its newline.
std::string metrics_header();
/// One row as a line of metrics.csv, with its newline.
std::string format_metrics_row(const MetricsRow& r);
/// Parses a metrics.csv text by its header's column names (any order; unknown columns are
/// skipped; epoch, train_loss, train_accuracy, lr, seconds and images_per_second required).
/// Throws std::runtime_error naming `path`, the row and the column.
std::vector<MetricsRow> parse_metrics(const std::string& text, const std::string& path);
/// Reads and parses RUN_DIR/metrics.csv (parse_metrics).
std::vector<MetricsRow> read_metrics(const std::string& path);

// ---- log.jsonl ------------------------------------------------------------------------------

/// One line of RUN_DIR/log.jsonl for a training step (with its newline):
///   {"type": "step", "epoch": 1, "step": 17, "loss": 2.1034, "lr": 0.05, "images_per_s": 612.4}
/// epoch 1-based, step the run's steps done (1-based), loss the step's batch loss (rank 0's
/// slice under data parallelism), lr the schedule's, images_per_s the step's images over its
/// wall time (data loading included). Numbers with 6 significant digits.
std::string format_step_record(const StepEnd& s);
/// One line of RUN_DIR/log.jsonl for an epoch: {"type": "epoch", "step": S, then every
/// metrics.csv column by name, in metrics.csv's order, each number as metrics.csv prints it},
/// S the run's steps done at the epoch's end; test_loss and test_accuracy null when the epoch
/// was not evaluated.
std::string format_epoch_record(const MetricsRow& r, int64_t step);
/// Cuts RUN_DIR/log.jsonl (at `path`) before its first line past a resumed run's point: a step
/// line with "step" > steps_done, an epoch line with "epoch" > epochs_done, or a line that is
/// not a JSON object with a "type" (a line torn by a kill). The lines before stay as they are,
/// so the continued run appends to the log of the epochs it continues. Does nothing when the
/// file does not exist. Throws std::runtime_error naming the file when it cannot be read or
/// cut, or is not a regular file.
void trim_run_log(const std::string& path, int64_t epochs_done, int64_t steps_done);

// ---- model.safetensors ----------------------------------------------------------------------

/// Writes `model`'s state_dict to `path` (atomically) with metadata format "minidl", model
/// (o.model), normalization (o.normalize), config (config_to_json(o), compact), epoch,
/// test_accuracy (std::to_string), seed; and for airbench94 or o.tta > 0, tta and
/// test_accuracy_tta unless test_accuracy_tta is NaN (the TTA pass has not run: an epoch's
/// checkpoint before the last); and every entry of `extra` (a data-parallel run's world_size
/// and running_statistics: which process's BatchNorm statistics the file holds).
void save_checkpoint(const std::string& path, const Module& model, const TrainOptions& o,
                     int64_t epoch, double test_accuracy,
                     double test_accuracy_tta = std::numeric_limits<double>::quiet_NaN(),
                     const std::map<std::string, std::string>& extra = {});
/// Thrown by load_model for a checkpoint holding NaN or infinity.
struct NonFiniteCheckpoint : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// The ModelOptions a checkpoint's model is rebuilt with: norm and gn_groups from the config.json
/// in its metadata ("config"; absent keys, or no entry: bn and 32, as every checkpoint before
/// --norm). Throws std::runtime_error naming `path` for a config that is not JSON or a bad value.
ModelOptions checkpoint_model_options(const Checkpoint& ck, const std::string& path);
/// Builds the model named in a checkpoint's metadata ("model") with checkpoint_model_options
/// (its normalization) and loads its tensors. Throws
/// std::runtime_error naming the file when the metadata has no model name, and the
/// load_state_dict error (naming the tensor) when a name or shape does not fit. Unless
/// `allow_nonfinite`, a tensor holding NaN or infinity is refused (NonFiniteCheckpoint), naming
/// the tensor, the count and the first index. The model is returned in eval mode.
std::shared_ptr<Module> load_model(const std::string& checkpoint_path, Checkpoint* out = nullptr,
                                   bool allow_nonfinite = false);
/// The input normalization a checkpoint was trained with: its metadata entry "normalization";
/// cifar10 when absent (minidl before the entry existed). Throws std::runtime_error naming
/// `path` for an unknown name.
data::Normalization checkpoint_normalization(const Checkpoint& ck, const std::string& path);
/// The "epoch" of RUN_DIR/model.safetensors: epochs finished (0 when the file does not exist).
/// Throws std::runtime_error naming the file when the entry is missing or not a number.
int64_t checkpoint_epoch(const std::string& run_dir);

// ---- train_state.safetensors ----------------------------------------------------------------

/// Thrown when a run cannot be continued from its directory (the CLI prefixes "--resume: ").
struct ResumeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// RUN_DIR/train_state.safetensors, version 2: model.<name> (every state_dict tensor),
/// optimizer.<param>.<kind> (every optimizer buffer, shape [0] before its first update), and
/// metadata format "minidl-train-state", version "2", model, epochs_done, step,
/// optimizer_steps, metrics (metrics.csv's text so far). Version 1 held only "optimizer.<index>"
/// buffers; it is still read, with the model from model.safetensors.
void save_train_state(const std::string& path, const Module& model, optim::Optimizer& opt,
                      const std::string& model_name, int64_t epochs_done, int64_t step,
                      const std::string& metrics);

/// Where a run continues.
struct ResumePoint {
  int64_t epoch = 0;    ///< epochs done
  int64_t step = 0;     ///< optimizer steps done (epoch x batches per epoch)
  std::string metrics;  ///< metrics.csv's text up to `epoch`
};
/// Loads RUN_DIR's train state into `model` and `opt`, checking every name, shape and size
/// against them and the step against `per_epoch` batches per epoch. Throws ResumeError naming
/// the file and the entry.
ResumePoint load_train_state(const std::string& run_dir, Module& model, optim::Optimizer& opt,
                             const TrainOptions& o, int64_t per_epoch);

// ---- results.json ---------------------------------------------------------------------------

/// What a run measured.
struct RunResult {
  double test_accuracy = 0.0;      ///< last epoch's, eval mode, no TTA
  double test_loss = 0.0;          ///< last epoch's
  double test_accuracy_tta = 0.0;  ///< with TrainOptions::tta (= test_accuracy when 0)
  double train_accuracy = 0.0;     ///< last epoch's, augmented batches, train-mode BN
  double train_loss = 0.0;         ///< last epoch's (with label smoothing, as optimized)
  int64_t epochs_run = 0;          ///< epochs trained by this fit()
  int64_t epochs_done = 0;         ///< epochs of the run in all
  int64_t steps = 0;               ///< optimizer steps of the run in all
  int64_t trainable_parameters = 0;
  double images_per_second = 0.0;  ///< mean training throughput of this fit()
  double train_seconds = 0.0;      ///< training loops (and whitening init) of this fit()
  double eval_seconds = 0.0;       ///< test passes of this fit()
  double total_seconds = 0.0;      ///< wall time of this fit(), data loading included
  bool finished = false;           ///< the run reached its last epoch
};
/// Writes RUN_DIR/results.json (2-space indent), one object with, in this order:
///   recipe, model, seed, threads   the run's settings
///   finished                       whether the run reached its last epoch (false after
///                                  --stop-after; a resumed run rewrites the file)
///   epochs, epochs_planned, steps  epochs done in all, the run's length, steps done in all
///   trainable_parameters
///   test_accuracy, test_loss       the last epoch's (metrics.csv's last row, its 6 decimals),
///                                  eval mode, no TTA; null when that epoch was not evaluated
///   best_test_accuracy, best_epoch the best test accuracy of metrics.csv and its epoch (null
///                                  when no epoch was evaluated)
///   tta, test_accuracy_tta         the TTA level and the final accuracy with it (tta 0:
///                                  test_accuracy; null for a run not finished)
///   train_loss, train_accuracy     the last epoch's (metrics.csv's last row)
///   images_per_second, train_seconds, eval_seconds, total_seconds   of this invocation (to
///                                  0.1 image/s and 1 ms)
/// `rows` are the run's metrics.csv rows (every epoch so far).
void write_results(const std::string& path, const TrainOptions& o, const RunResult& r,
                   const std::vector<MetricsRow>& rows);

}  // namespace minidl::train
