// minidl — BatchNorm1d and BatchNorm2d (torch.nn.BatchNorm1d / BatchNorm2d).
//
//   y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias        (Ioffe & Szegedy 2015, Alg. 1)
//
// Statistics are per feature / channel C (C = num_features): over N for [N, C] and over N, L for
// [N, C, L] (BatchNorm1d), over N, H, W for [N, C, H, W] (BatchNorm2d).
// Shape (letters of core/ops.hpp's legend):
//   BatchNorm1d: input [N, C] or [N, C, L] -> output of the same shape.
//     [N, C]: each of the C features is normalized over the N samples (M = N values).
//     [N, C, L]: each channel over the N * L values of the batch, all positions of the sequence
//     together (M = N * L), as torch.nn.BatchNorm1d does; not per position.
//   BatchNorm2d: input [N, C, H, W] -> output [N, C, H, W] (M = N * H * W values per channel).
//   weight, bias, running_mean, running_var: [C].
// - train(): normalize with the batch mean and the biased batch variance, and update
//     running_mean = (1 - momentum) * running_mean + momentum * batch_mean
//     running_var  = (1 - momentum) * running_var  + momentum * unbiased_batch_var
//   This is PyTorch's momentum (default 0.1). Keras' BatchNormalization(momentum=0.99) is the
//   same rule written the other way round: keras_momentum = 1 - momentum.
//   A channel with a single value (M = 1: BatchNorm1d on [1, C] or [1, C, 1]) is an error, as in
//   PyTorch.
// - eval(): normalize with running_mean / running_var; each sample is then independent of
//   the rest of the batch, so one image gives the same output alone as inside a batch.
// Parameters (affine = true): weight = gamma [C] (init 1), bias = beta [C] (init 0).
// Buffers: running_mean [C] (init 0), running_var [C] (init 1).
// Freezing: weight/bias.set_requires_grad(false) freezes the parameters (no gradient);
//   eval() freezes the statistics. They are separate switches; Keras' trainable = False sets
//   both.
// Errors: std::invalid_argument for an input of the wrong rank or channel count.
#pragma once

#include <optional>
#include <vector>

#include "core/ops.hpp"
#include "dist/process_group.hpp"
#include "layers/module.hpp"

namespace minidl {

/// BatchNorm's settings, as libtorch's torch::nn::BatchNormOptions, with torch.nn.BatchNorm2d's
/// defaults (eps 1e-5, momentum 0.1 in PyTorch's convention, affine true):
///   BatchNorm2d(BatchNormOptions(64).momentum(0.01))    // Keras momentum 0.99
struct BatchNormOptions {
  BatchNormOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT: implicit
  BatchNormOptions& eps(float v) {
    eps_ = v;
    return *this;
  }
  BatchNormOptions& momentum(float v) {
    momentum_ = v;
    return *this;
  }
  BatchNormOptions& affine(bool v) {
    affine_ = v;
    return *this;
  }
  int64_t num_features_;
  float eps_ = 1e-5f, momentum_ = 0.1f;
  bool affine_ = true;
};

class BatchNorm : public Module {
 public:
  /// spatial = false: BatchNorm1d ([N, C] or [N, C, L]); true: BatchNorm2d ([N, C, H, W]). Throws
  /// std::invalid_argument for num_features < 1, eps <= 0 or momentum outside [0, 1].
  BatchNorm(const BatchNormOptions& options, bool spatial);
  Tensor forward(const Tensor& x) override;
  /// relu(forward(x)), fused into one op (ops::batch_norm_relu). Runs the forward pre-hooks
  /// with x, as operator() would.
  Tensor forward_relu(const Tensor& x);
  /// relu(forward(x) + residual), fused into one op (ops::batch_norm_add_relu). Runs the
  /// forward pre-hooks with x.
  Tensor forward_add_relu(const Tensor& x, const Tensor& residual);
  std::string type_name() const override { return spatial_ ? "BatchNorm2d" : "BatchNorm1d"; }
  Tensor weight, bias, running_mean, running_var;
  int64_t num_features;
  float eps, momentum;
  /// Synchronized statistics (torch.nn.SyncBatchNorm; ops::BatchNormSync): when set and of more
  /// than one process, training mode normalizes with the statistics of every process's batch
  /// together (an allgather of (count, mean, M2) per channel in double, merged in rank order
  /// with Chan et al.'s formula) and backward sums (sum dy, sum dy * x_hat) over the processes
  /// (allgather, then a sum in rank order: the same bits on every process). Eval mode and a
  /// group of one process make no collective call: with one process this is BatchNorm exactly,
  /// as PyTorch's SyncBatchNorm falls back to batch_norm.
  std::shared_ptr<dist::ProcessGroup> sync_group;
  /// Partition-independent statistics (ops::BatchNormSync::place; `--bn-sync exact`): training
  /// reduces statistics and gradient sums from per-image partials in global image order, over
  /// sync_group's processes (an allgather of each process's image count, then an allreduce of a
  /// [N_global, C, 2] buffer of doubles per pass) or over this process's batch alone when
  /// sync_group is unset or of one process. The same global batch then gives the same bits
  /// however it is split. Costs a little over plain BatchNorm's single-shift sums; eval mode
  /// is unchanged and makes no collective call. Not combined with group_size.
  bool exact_statistics = false;
  /// Ghost batches (ops::batch_norm's group_size): in training, statistics per group of
  /// group_size consecutive images, the last group smaller when it does not divide the batch;
  /// the running statistics updated from each group in order. 0: the whole batch. Not combined
  /// with sync_group (a synchronized layer normalizes over the global batch).
  int64_t group_size = 0;
  /// Batch Renormalization (ops::BatchRenorm; Ioffe 2017, Algorithm 1) in training mode when
  /// set: r = clip(sigma_B / sigma, 1 / r_max, r_max), d = clip((mu_B - mu) / sigma, -d_max,
  /// d_max) from the running statistics, constants of the backward. Combines with group_size
  /// (each ghost group renormalized); not with sync_group. The trainer ramps r_max and d_max
  /// (train::TrainOptions::renorm_*). Freezes nothing.
  std::optional<ops::BatchRenorm> renorm;

 private:
  Tensor run(const Tensor& x, bool relu, const Tensor& residual);
  bool spatial_;
};

/// Merges per-channel statistics over `group`: stats [3C] holds this process's (count, mean,
/// M2) of each channel; afterwards, the union's, from an allgather and Chan, Golub & LeVeque's
/// pairwise update applied in rank order (processes with count 0 skipped): with n = na + nb,
/// delta = mb - ma: mean = ma + delta nb / n, M2 = M2a + M2b + delta^2 na nb / n.
void merge_statistics(dist::ProcessGroup& group, std::vector<double>& stats);

class BatchNorm1d : public BatchNorm {
 public:
  /// BatchNorm1d(64) or BatchNorm1d(BatchNormOptions(64).eps(1e-3f)).
  explicit BatchNorm1d(const BatchNormOptions& options) : BatchNorm(options, false) {}
};

class BatchNorm2d : public BatchNorm {
 public:
  /// BatchNorm2d(64) or BatchNorm2d(BatchNormOptions(64).momentum(0.01f)).
  explicit BatchNorm2d(const BatchNormOptions& options) : BatchNorm(options, true) {}
};

}  // namespace minidl
