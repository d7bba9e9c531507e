// minidl — the CIFAR ResNet (He et al. 2016, §4.2) as in the BN-only paper's reference code
// (open_lth, models/cifar_resnet.py, "cifar_resnet_<D>_<W>").
//
//   conv 3x3 (3 -> W) - BN - ReLU
//   3 stages of (D - 2) / 6 BasicBlocks with W, 2W, 4W channels; the first block of stages 2 and
//   3 has stride 2.
//   BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut = identity, or
//   conv 1x1 stride 2 + BN where the shape changes. Convs have no bias (BN follows each).
//   global average pool - Linear(4W -> num_classes)
// Shape: [N, 3, 32, 32] -> logits [N, num_classes].
// Names (state_dict): conv.weight, bn.*, blocks.<i>.{conv1,bn1,conv2,bn2}.*,
//   blocks.<i>.shortcut.{0.weight,1.*}, fc.{weight,bias}; <i> counts blocks over all stages.
// Registered names: "resnet<D>" (W = 16) and "resnet<D>_<W>", D = 6k + 2 (resnet20 ~ 0.27 M
// parameters; resnet14, resnet110, resnet866 as in the paper).
//
// The normalization layer (ModelOptions::norm, `minidl train --norm`): every BN above is the
// layer `norm` names, under the same attribute name (bn, bn1, bn2, shortcut.1: torchvision's
// ResNet keeps "bn1" whatever its norm_layer):
//   bn    BatchNorm2d (the default), with the fused BN + ReLU and BN + add + ReLU ops;
//   gn    GroupNorm(min(gn_groups, C), C) on C channels (Wu & He 2018; gn_groups 32 by default),
//         so resnet20's stages of 16, 32, 64 channels get 16, 32, 32 groups;
//   ln    LayerNorm as Wu & He define it for conv nets: GroupNorm(1, C), statistics over C, H, W
//         of each image and a gamma and beta per channel (layers/layer_norm.hpp's LayerNorm over
//         [C, H, W] would have a gamma per pixel instead);
//   none  no normalization: an Identity with no tensors.
// With gn, ln and none a block is relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x)) with
// unfused ops; the state names are bn's without running_mean and running_var (none: without
// any bn tensor). None of them depends on the batch: train and eval mode compute the same.
#pragma once

#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/models/registry.hpp"
#include "layers/sequential.hpp"

namespace minidl {

/// The normalization layer `norm` names for `channels` channels: BatchNorm2d, GroupNorm (with
/// min(gn_groups, channels) groups with gn, 1 with ln) or Identity. Throws std::invalid_argument
/// naming gn_groups when that count does not divide `channels`.
std::shared_ptr<Module> make_norm_layer(NormKind norm, int64_t gn_groups, int64_t channels);

class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_channels, int64_t out_channels, bool downsample, Generator& gen,
             NormKind norm = NormKind::kBatch, int64_t gn_groups = 32);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Block"; }
  std::shared_ptr<Conv2d> conv1, conv2;
  /// The normalization layers, registered as "bn1" and "bn2" whatever the norm: BatchNorm2d,
  /// GroupNorm or Identity.
  std::shared_ptr<Module> norm1, norm2;
  /// norm1 and norm2 as BatchNorm2d with norm bn (the fused paths use them); null otherwise.
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> shortcut;  // null for the identity
  /// The shortcut's two layers (its 1 x 1 conv and its normalization); null for the identity.
  std::shared_ptr<Conv2d> shortcut_conv;
  std::shared_ptr<Module> shortcut_norm;

 private:
  NormKind norm_kind_;
};

class CifarResNet : public Module {
 public:
  /// Largest depth and width accepted: resnet2000 trains in about 20 GiB at batch 128, width 512
  /// gives 2048-channel 3x3 convs (38 M weights each); beyond, allocation would fail first.
  static constexpr int64_t kMaxDepth = 2000, kMaxWidth = 512;
  /// Throws std::invalid_argument unless depth = 6k + 2 with 8 <= depth <= kMaxDepth and
  /// 1 <= width <= kMaxWidth; with norm gn, unless gn_groups >= 1 and min(gn_groups, C) divides
  /// the C channels of every stage (W, 2W, 4W), naming gn_groups.
  CifarResNet(int64_t depth, int64_t width, int64_t num_classes, Generator& gen,
              NormKind norm = NormKind::kBatch, int64_t gn_groups = 32);
  /// The parameter count of CifarResNet(depth, width, num_classes, ..., norm), computed without
  /// building it (valid depth and width assumed): convolutions, normalization affines (none for
  /// NormKind::kNone), the shortcuts' 1x1 convolutions and the final Linear.
  static int64_t parameter_count(int64_t depth, int64_t width, int64_t num_classes, NormKind norm);
  /// The data-derived stem (bn-speedrun's labelled variant, `--stem-whitening`): sets the stem
  /// conv's weight [W, 3, 3, 3] to patch_whitening_weight(images, 3, eps, W / 2)
  /// (layers/patch_whitening.hpp): the W / 2 leading principal components of the images' 3x3
  /// patches, each scaled to unit variance, and their negatives, so that the ReLU after the
  /// stem's BN passes both signs of each (as airbench94's whitening conv does with its 2x2
  /// patches and GELU). The weight keeps its requires_grad: freezing it is train_only's job.
  /// images: [N, 3, H, W], normalized as the training inputs. Throws std::invalid_argument
  /// unless the width W is even and at most 54 (2 x the 27 values of a 3x3x3 patch), and as
  /// patch_whitening_weight for bad images.
  void init_stem_whitening(const Tensor& images, double eps = 5e-4);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "CifarResNet"; }
  std::shared_ptr<Conv2d> conv;
  /// The stem's normalization layer, registered as "bn" (BatchNorm2d, GroupNorm or Identity).
  std::shared_ptr<Module> norm;
  /// norm as BatchNorm2d with norm bn; null otherwise.
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<Sequential> blocks;
  std::shared_ptr<Linear> fc;

 private:
  NormKind norm_kind_;
};

}  // namespace minidl
