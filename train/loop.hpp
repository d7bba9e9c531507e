// minidl — the training loop and evaluation: one epoch of steps, evaluation with test-time
// augmentation, BN recalibration. The step reads as llm.c's: forward, zero_grad, backward, step.
// The Trainer (train/trainer.hpp) runs these epoch after epoch; they can also be called alone
// (examples/custom_layer did before the Trainer existed).
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/cifar10.hpp"
#include "data/loader.hpp"
#include "layers/module.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"

namespace minidl::train {

/// Loss and accuracy over a dataset.
struct EvalResult {
  double loss = 0.0;  ///< mean cross-entropy (no label smoothing)
  int64_t correct = 0;
  int64_t count = 0;
  /// confusion[true_label][predicted] counts, K x K for K classes (the logits' width)
  std::vector<std::vector<int64_t>> confusion;
  double accuracy() const { return count ? static_cast<double>(correct) / count : 0.0; }
};

/// How BatchNorm computes its statistics while evaluating:
///   "running": inference mode, the running averages (model.eval(); the default everywhere)
///   "batch":   training-mode statistics of each evaluation batch (running buffers untouched)
enum class BnStats { kRunning, kBatch };

/// The test-time-augmentation levels of tta_logits: 0, 1, 2.
constexpr int kMaxTtaLevel = 2;

/// The logits of `model` for images x [N, 3, H, W] with test-time augmentation (airbench94's
/// `infer`, Jordan 2024, Section 3.5), [N, K]:
///   level 0: model(x)
///   level 1: (model(x) + model(hflip(x))) / 2                        (the image and its mirror)
///   level 2: level1(x) / 2 + (level1(up_left(x)) + level1(down_right(x))) / 4, where the two
///            one-pixel translations are data::crop_reflect(x, 1, 0, 0) and (x, 1, 2, 2):
///            6 views, the untranslated pair weighted 1/4 each and the four others 1/8.
/// Runs in whatever mode the model is in (evaluate puts it in eval mode). Throws
/// std::invalid_argument ("tta must be 0, 1 or 2") for a level outside 0..2.
Tensor tta_logits(Module& model, const Tensor& x, int level);

/// How far an evaluation has got, after each of its batches (for progress bars).
struct EvalProgress {
  int64_t images = 0;   ///< evaluated so far
  int64_t total = 0;    ///< of the dataset
  int64_t correct = 0;  ///< of `images`
  double loss = 0.0;    ///< mean loss over `images`
};

/// Evaluates `model` on `ds` in batches under no-grad, with test-time augmentation level `tta`
/// (tta_logits; the loss is that of the averaged logits). Puts the model in eval mode (or, for
/// BnStats::kBatch, BN layers in train mode on a copy of their buffers) and leaves it in eval
/// mode. The confusion matrix is K x K for the logits' K classes; a label outside 0..K-1 is
/// counted as wrong and left out of the matrix. `on_batch`, if set, is called after every
/// batch. Throws std::invalid_argument naming batch_size (< 1) or tta (outside 0..2), and
/// BatchNorm's error for a batch of one image with kBatch.
EvalResult evaluate(Module& model, const data::Dataset& ds, int64_t batch_size,
                    BnStats bn_stats = BnStats::kRunning, const data::Normalization& norm = {},
                    int tta = 0, const std::function<void(const EvalProgress&)>& on_batch = {});

/// Sets every BatchNorm's running statistics to the population statistics of `ds` (no
/// augmentation), in inference mode, layer after layer (layers/recalibrate.hpp), feeding
/// batches of `batch_size` images. Returns the number of BN layers. Throws
/// std::invalid_argument naming batch_size when it is < 1.
int recalibrate_on(Module& model, const data::Dataset& ds, int64_t batch_size,
                   const data::Normalization& norm = {});

/// Statistics of one training epoch.
struct EpochStats {
  double loss = 0.0;      ///< mean training loss (with label smoothing, as optimized)
  double accuracy = 0.0;  ///< accuracy on the (augmented) training batches, train-mode BN
  int64_t images = 0;
  int64_t batches = 0;
  double seconds = 0.0;
};

/// "NaN", "infinity" or "-infinity" for a non-finite `v`; std::to_string(v) otherwise.
inline std::string nonfinite_name(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "infinity" : "-infinity";
  return std::to_string(v);
}

/// Thrown by train_epoch when training diverges: a non-finite loss, or a non-finite value in a
/// trainable parameter after a step. what() names the epoch and batch (and the parameter).
struct Diverged : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One finished training step, as StepHooks::on_step_end sees it.
struct StepEnd {
  int64_t epoch = 0;     ///< 0-based
  int64_t step = 0;      ///< the run's steps done, this one included (1-based)
  double loss = 0.0;     ///< this process's batch loss (with label smoothing, as optimized)
  double lr = 0.0;       ///< the schedule's learning rate of the step
  int64_t images = 0;    ///< the images of the step (the global batch under data parallelism)
  double seconds = 0.0;  ///< since the previous step ended (or the epoch began), data included
};

/// Callbacks into one training step (the probes of experiments/why_bn.hpp, airbench94's
/// lookahead, data-parallel gradient synchronization next). `after_backward(batch, step, loss)`
/// runs once the batch's gradients are in the parameters' .grad (loss: the value they are the
/// gradient of), before the optimizer step; `after_step(batch, step)` right after the step (before
/// the finiteness check). `step` is the step's 0-based index. A hook that changes the weights,
/// buffers or gradients must put them back.
struct StepHooks {
  std::function<void(const data::Batch&, int64_t step, float loss)> after_backward;
  std::function<void(const data::Batch&, int64_t step)> after_step;
  /// After the step passed the finiteness check (a step that diverges never reaches it).
  std::function<void(const StepEnd&)> on_step_end;
  /// Data parallelism (train/trainer.cpp): when set, each process's loss is weighted by its
  /// share of the global batch (n / Batch::global_size) before backward, and this is called
  /// right after backward: it sums the trainable parameters' gradients over the processes and
  /// returns whether every summed value is finite. A non-finite loss makes non-finite
  /// gradients, so every process sees a divergence at the same step (none stops alone and
  /// leaves the others waiting in a collective).
  std::function<bool()> reduce_gradients;
  /// When >= 0, the epoch ends early once `step` (the running count) reaches this value: the
  /// last step of a run whose length is not a whole number of epochs (airbench94's 9.9).
  int64_t stop_at_step = -1;
};

/// How far a training epoch has got, after each of its batches (for progress bars and step
/// logs).
struct BatchProgress {
  int64_t batch = 0;      ///< 1 .. batches
  int64_t batches = 0;    ///< of the epoch
  int64_t step = 0;       ///< steps of the run taken, this batch's included
  int64_t images = 0;     ///< images of the epoch so far (this process's)
  double loss = 0.0;      ///< mean training loss of the epoch so far (as optimized)
  double accuracy = 0.0;  ///< fraction of the epoch's images so far classified right
  double lr = 0.0;        ///< the learning rate of this batch's step
};

/// One epoch of training: for each batch, lr from `schedule` at `step` (incremented), forward,
/// zero_grad, backward, step (the last two as profiler Scopes "optimizer.zero_grad" and
/// "optimizer.step"). `on_batch` is called after every batch (BatchProgress). Throws Diverged
/// when the loss or a trainable parameter becomes NaN or infinite — nothing already saved is
/// touched.
EpochStats train_epoch(Module& model, data::DataLoader& loader, optim::Optimizer& opt,
                       const optim::Schedule& schedule, int64_t& step, float label_smoothing,
                       int64_t epoch,
                       const std::function<void(const BatchProgress&)>& on_batch = {},
                       const StepHooks& hooks = {});

}  // namespace minidl::train
