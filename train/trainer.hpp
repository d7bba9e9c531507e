// minidl — the Trainer: runs a training run epoch after epoch (Keras' Model.fit, Lightning's
// Trainer). It builds the model, data, optimizer and schedule from TrainOptions
// (train/options.hpp), trains with train_epoch (train/loop.hpp), evaluates, and commits every
// epoch to the run directory (train/run_dir.hpp). Printing, progress bars, profiling and probes
// are callbacks; nothing here prints.
//
//   train::TrainOptions o = train::preset(train::Recipe::kDefault);
//   o.data = "cifar-10-batches-bin";
//   train::Callbacks cb;
//   cb.on_epoch_end = [](const train::EpochEnd& e) { std::printf("%f\n", e.row.train_loss); };
//   train::RunResult r = train::Trainer(o, cb).fit();
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "data/cifar10.hpp"
#include "dist/process_group.hpp"
#include "layers/module.hpp"
#include "optim/optimizer.hpp"
#include "train/loop.hpp"
#include "train/options.hpp"
#include "train/run_dir.hpp"

namespace minidl::train {

/// What on_fit_start sees.
struct FitStart {
  const TrainOptions& options;
  const Module& model;
  int64_t parameters = 0;  ///< parameter elements
  int64_t trainable = 0;   ///< parameter elements that learn
  int64_t train_images = 0, test_images = 0;
  int64_t epochs = 0;             ///< epochs of the run (airbench94's 9.9: 10)
  int64_t start_epoch = 0;        ///< epochs already done (resumed runs)
  int64_t end_epoch = 0;          ///< epochs done when this fit() returns (stop_after applied)
  int64_t batches_per_epoch = 0;  ///< full epochs
  int64_t total_steps = 0;
  int world_size = 1;  ///< processes training the model together
};

/// What on_epoch_end sees, after the epoch was committed to the run directory.
struct EpochEnd {
  int64_t epochs = 0;              ///< of the run
  MetricsRow row;                  ///< the epoch's metrics.csv row (1-based epoch)
  EpochStats train;                ///< the training loop's
  std::optional<EvalResult> test;  ///< when the epoch was evaluated
};

/// What on_evaluate_start sees.
struct EvaluateStart {
  int64_t epoch = 0;   ///< the epoch just trained (0-based)
  int64_t images = 0;  ///< test images this process evaluates (its slice when parallel)
  int tta = 0;         ///< test-time augmentation level (> 0: the final evaluation)
};

/// The Trainer's callbacks; any may be empty.
struct Callbacks {
  std::function<void(const FitStart&)> on_fit_start;
  /// Before the epoch's first step (0-based epoch).
  std::function<void(int64_t epoch)> on_epoch_start;
  /// After every training batch (this process's images and loss).
  std::function<void(const BatchProgress&)> on_batch_end;
  /// After the epoch's training loop, before its evaluation (0-based epoch).
  std::function<void(int64_t epoch, const EpochStats&)> on_train_epoch_end;
  /// Before the test pass of an epoch, and of the final test-time augmented evaluation.
  std::function<void(const EvaluateStart&)> on_evaluate_start;
  /// After every batch of a test pass (this process's share of the test set when parallel).
  std::function<void(const EvalProgress&)> on_evaluate_batch;
  std::function<void(const EpochEnd&)> on_epoch_end;
  /// Inside each step (train/loop.hpp): after backward, after the optimizer step.
  StepHooks step;
  /// Around every write to the run directory (an epoch's commit: config.json the first time,
  /// train_state.safetensors, model.safetensors, metrics.csv; a resumed run's catch-up writes;
  /// the final checkpoint and results.json), so that a signal handler can hold an interruption
  /// until the files are written. on_commit_end gets the epoch whose checkpoint
  /// model.safetensors now holds (0: none written by this run yet).
  std::function<void()> on_commit_start;
  std::function<void(int64_t saved_epoch)> on_commit_end;
};

/// What fit() does, when not resuming, with a run directory that already holds a run
/// (run_files): replace it (the library's default; the old files are replaced at the new
/// run's first commit point, so a run that fails before leaves them as they were) or refuse it
/// (RunExists, before anything is read or written; the CLI's default).
enum class ExistingRun { kReplace, kRefuse };

/// Thrown by fit() when training diverges (a non-finite loss or parameter). Nothing of the
/// diverging epoch is saved; the run directory keeps the last good epoch.
struct FitDiverged : std::runtime_error {
  FitDiverged(const std::string& reason, int64_t kept_epoch, std::string checkpoint);
  std::string reason;      ///< train_epoch's message: the epoch, the batch, the parameter
  int64_t kept_epoch = 0;  ///< epochs whose checkpoint is kept (0: none)
  std::string checkpoint;  ///< its path (empty: none)
};

class Trainer {
 public:
  explicit Trainer(TrainOptions options, Callbacks callbacks = {});

  /// Trains data-parallel over `group` (dist/process_group.hpp; default: the local group of one
  /// process). Every process runs fit() with the same options: rank 0's initial parameters and
  /// buffers are broadcast; each step, process r takes its contiguous slice of the global batch
  /// (data::LoaderOptions::rank), weights its loss by its share of the global batch, and the
  /// trainable parameters' gradients are summed over the processes in one flat buffer
  /// (options.reduction) before every process takes the same step. BatchNorm normalizes over
  /// the slice or the global batch (options.bn_sync). After each epoch rank 0's buffers
  /// (BatchNorm's running statistics) are broadcast, and a 64-bit hash of every parameter and
  /// buffer is compared across processes (a mismatch throws, naming the first tensor). Only
  /// rank 0 writes the run directory and calls the callbacks (but `step`); evaluation is split
  /// over the processes and summed. Needs batch_size >= the number of processes.
  void set_process_group(std::shared_ptr<dist::ProcessGroup> group) { group_ = std::move(group); }

  /// What a new run does with a run already in options.out (default: replace it).
  void set_existing_run(ExistingRun policy) { existing_ = policy; }

  /// Datasets to use instead of reading options.data (not owned; must outlive fit()). A null
  /// `test`: no evaluation at all.
  void set_datasets(const data::Dataset* train, const data::Dataset* test);

  /// Trains the run. With `resume`, continues the run in options.out from its last committed
  /// epoch (the options must be the run's: train/run_dir.hpp, read_config). `stop_after` > 0
  /// ends this call after that many epochs while the schedule still spans options.epochs.
  /// Rank 0 holds options.out's RunLock from the start of fit() to its end. Throws OptionError
  /// for a bad option, RunInUse when another process trains in options.out, RunExists (see
  /// ExistingRun), ResumeError when the run cannot be continued, FitDiverged, and the readers'
  /// errors for bad data files.
  RunResult fit(bool resume = false, int64_t stop_after = -1);

  const TrainOptions& options() const { return o_; }
  /// The model and optimizer of the last fit() (null before).
  std::shared_ptr<Module> model() const { return model_; }
  std::shared_ptr<optim::Optimizer> optimizer() const { return opt_; }

 private:
  TrainOptions o_;
  Callbacks cb_;
  const data::Dataset* train_ = nullptr;
  const data::Dataset* test_ = nullptr;
  bool have_datasets_ = false;
  ExistingRun existing_ = ExistingRun::kReplace;
  std::shared_ptr<Module> model_;
  std::shared_ptr<optim::Optimizer> opt_;
  std::shared_ptr<dist::ProcessGroup> group_;
};

/// Broadcasts rank 0's parameters and buffers (model.state_dict(), in order) to every process.
void broadcast_state(dist::ProcessGroup& group, Module& model);
/// Broadcasts rank 0's named buffers only (BatchNorm's running statistics).
void broadcast_buffers(dist::ProcessGroup& group, Module& model);
/// Compares a 64-bit hash of every tensor of model.state_dict() across the processes. Throws
/// std::runtime_error naming the first tensor whose hash differs (and the ranks) if any.
void check_replicas(dist::ProcessGroup& group, const Module& model);

/// The optimizer `o` names over `model`'s parameters (SGD Nesterov only when momentum > 0).
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o, Module& model);

/// The loader options of `o`'s training set: batches of o.batch_size, shuffled, augmented as
/// `o` says, normalized, seeded by o.seed; incomplete batches dropped when the set holds more
/// than one batch. The Trainer trains on exactly these, so data::make_epoch_plan(N,
/// loader_options(o, N), e) is its epoch e.
data::LoaderOptions loader_options(const TrainOptions& o, int64_t train_images);

/// Sets the mode of every BatchNorm in `model` (train: batch statistics; eval: running).
void set_batch_norm_training(Module& model, bool training);

/// Parameter elements of `model`.
int64_t count_parameters(const Module& model);

/// A step's tensor memory as a function of its batch: fixed_bytes + batch x bytes_per_image.
struct StepMemory {
  int64_t fixed_bytes = 0, bytes_per_image = 0;
  /// The bytes at `batch` images (saturating at INT64_MAX).
  int64_t at(int64_t batch) const;
};
/// Measures the peak tensor storage (core/tensor.hpp, storage_bytes) of a step of a fresh model
/// `model_name` built with `mo`, on 2 and then 4 random images: forward, cross-entropy, backward
/// and an SGD step with momentum (`train`), or an inference forward under no-grad. The model,
/// data and optimizer are the probe's own: nothing of a run is touched. Throws create_model's
/// errors.
StepMemory measure_step_memory(const std::string& model_name, const ModelOptions& mo, bool train);
/// Refuses a batch whose step would not fit in the memory the machine has available
/// (core/system.hpp): throws OptionError("batch_size", "batch_size N: a training step of MODEL
/// needs about X GiB (B bytes: F for the model, P per image), more than the Y GiB (...) this
/// machine has available"). Does nothing when the available memory is unknown.
void check_batch_memory(const std::string& model_name, const ModelOptions& mo, int64_t batch_size,
                        bool train);

}  // namespace minidl::train
