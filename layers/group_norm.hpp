// minidl — GroupNorm (torch.nn.GroupNorm; Wu & He, "Group Normalization", ECCV 2018).
//
//   y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias        (Wu & He 2018, eq. 1-2 and 6)
//
// The C = num_channels channels of each sample form num_groups = G groups of C / G consecutive
// channels; mean and (biased) variance are those of one group of one sample, over its C / G
// channels and every position (eq. 7); weight and bias are per channel. No statistic depends on
// the rest of the batch, and there are no running buffers: train() and eval() compute the same
// thing, and one image gives the same output (bit for bit) alone as inside a batch. num_groups =
// 1 is LayerNorm as Wu & He define it for conv nets (statistics over C, H, W of each image, a
// gamma and beta per channel: what `--norm ln` builds); num_groups = C is InstanceNorm.
// Shape (letters of core/ops.hpp's legend): input [N, C, *] ([N, C], [N, C, L] or [N, C, H, W])
//   -> output of the same shape. weight, bias: [C].
// Parameters (affine = true): weight = gamma [C] (init 1), bias = beta [C] (init 0), PyTorch's
//   names and init. Buffers: none.
// Freezing: weight/bias.set_requires_grad(false) freezes the parameters; there are no statistics
//   to freeze (`--train-only bn` trains these gammas and betas: optim/freeze.hpp).
// Errors: std::invalid_argument from the constructor for num_groups < 1, num_channels not
//   divisible by num_groups, or eps <= 0; from forward for an input that is not [N, C, *] with
//   C = num_channels (naming the layer, the expected and the actual shape).
#pragma once

#include "layers/module.hpp"

namespace minidl {

/// GroupNorm's settings, as libtorch's torch::nn::GroupNormOptions, with torch.nn.GroupNorm's
/// defaults (eps 1e-5, affine true):
///   GroupNorm(GroupNormOptions(8, 64).eps(1e-6f))
struct GroupNormOptions {
  GroupNormOptions(int64_t num_groups, int64_t num_channels)
      : num_groups_(num_groups), num_channels_(num_channels) {}
  GroupNormOptions& eps(float v) {
    eps_ = v;
    return *this;
  }
  GroupNormOptions& affine(bool v) {
    affine_ = v;
    return *this;
  }
  int64_t num_groups_, num_channels_;
  float eps_ = 1e-5f;
  bool affine_ = true;
};

class GroupNorm : public Module {
 public:
  /// Throws std::invalid_argument for num_groups < 1, num_channels not divisible by
  /// num_groups, or eps <= 0.
  explicit GroupNorm(const GroupNormOptions& options);
  /// ops::group_norm(x, num_groups, weight, bias, eps); the same in train and eval mode.
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GroupNorm"; }
  Tensor weight, bias;  ///< [C] each; undefined when affine = false
  int64_t num_groups, num_channels;
  float eps;
};

}  // namespace minidl
