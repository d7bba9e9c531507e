// minidl — airbench94's network (Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single
// GPU", arXiv 2404.00498, Section 3; code KellerJordan/cifar10-airbench, legacy/airbench94.py).
//
//   whiten  Conv2d(3 -> 24, kernel 2, no padding, bias)  [N, 3, 32, 32] -> [N, 24, 31, 31]
//           GELU
//   block1  ConvGroup(24 -> 64)                          -> [N, 64, 15, 15]
//   block2  ConvGroup(64 -> 256)                         -> [N, 256, 7, 7]
//   block3  ConvGroup(256 -> 256)                        -> [N, 256, 3, 3]
//           MaxPool2d(3), flatten                        -> [N, 256]
//   head    Linear(256 -> 10, no bias), then logits * 1/9 -> [N, 10]
// ConvGroup(in -> out): conv1 3x3 (padding 1, no bias) -> MaxPool2d(2) -> norm1 BatchNorm2d ->
//   GELU -> conv2 3x3 (padding 1, no bias) -> norm2 BatchNorm2d -> GELU.
// Widths 64, 256, 256 are the recipe's; the whitening conv has 2 * 3 * 2 * 2 = 24 filters.
//
// BatchNorm as in the recipe: momentum 0.4 in PyTorch's convention (airbench writes 0.6, the
// weight of the old running value, Keras' convention), eps 1e-12, weight (gamma) frozen at 1
// (requires_grad false: no gradient, no weight decay), bias (beta) learns. The 3x3 convs have
// no bias: BN follows each of them (after the pool, which commutes with a per-channel bias).
//
// Initialization, as airbench's (PyTorch defaults, then Dirac): every conv weight and the head
// weight U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch.nn.Conv2d/Linear's reset_parameters,
// kaiming_uniform_ with a = sqrt(5)), then the first in_channels filters of every conv set to
// Dirac (identity) kernels (torch.nn.init.dirac_(w[:in_channels]), layers/module.hpp); the
// whitening conv's bias 0. Draws come from the model seed in module order (whiten, block1.conv1,
// block1.conv2, ..., head). The whitening conv's weight is frozen (requires_grad false) and is
// meant to be set by init_whitening from training images (the recipe does; without it the conv
// is the default init above). `minidl train --model airbench94 --train-only all` unfreezes
// gamma and the whitening weight again (every parameter learns); `--recipe airbench94` keeps
// the recipe's switches.
//
// Names (state_dict): whiten.{weight,bias}, block<k>.conv1.weight, block<k>.norm1.{weight,bias,
// running_mean,running_var}, block<k>.conv2.weight, block<k>.norm2.{...}, head.weight. airbench's
// nn.Sequential indexes them instead: 0 = whiten, 2, 3, 4 = block1..3 (same inner names), 7 =
// head.
// Errors: std::invalid_argument for an input that is not [N, 3, 32, 32].
#pragma once

#include <memory>

#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"

namespace minidl {

/// airbench94's conv -> pool -> BN -> GELU -> conv -> BN -> GELU block (see above).
/// [N, in, H, W] -> [N, out, H / 2, W / 2] (floor).
class ConvGroup : public Module {
 public:
  /// BN momentum and eps as the recipe's (0.4 PyTorch convention, 1e-12), gamma frozen.
  ConvGroup(int64_t in_channels, int64_t out_channels, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ConvGroup"; }
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> norm1, norm2;
};

class Airbench94 : public Module {
 public:
  /// Logits are multiplied by this (airbench's scaling_factor).
  static constexpr float kLogitScale = 1.0f / 9.0f;
  /// Whitening conv kernel size.
  static constexpr int64_t kWhitenKernel = 2;
  /// Builds the network with widths 64, 256, 256 and `num_classes` outputs, drawing every
  /// weight from `gen` (see above). Throws std::invalid_argument for num_classes < 1.
  Airbench94(int64_t num_classes, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Airbench94"; }
  /// Sets the whitening conv's weight to patch_whitening_weight(images, 2, eps)
  /// (layers/patch_whitening.hpp): images [N, 3, H, W], normalized as the training inputs
  /// (airbench: the first 5,000 training images, no augmentation, eps 5e-4). Throws as
  /// patch_whitening_weight.
  void init_whitening(const Tensor& images, double eps = 5e-4);
  std::shared_ptr<Conv2d> whiten;
  std::shared_ptr<ConvGroup> block1, block2, block3;
  std::shared_ptr<Linear> head;
};

}  // namespace minidl
