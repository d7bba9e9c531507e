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
#pragma once

#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/sequential.hpp"

namespace minidl {

class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_channels, int64_t out_channels, bool downsample, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Block"; }
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> shortcut;  // null for the identity
};

class CifarResNet : public Module {
 public:
  /// Largest depth and width accepted: resnet2000 trains in about 20 GiB at batch 128, width 512
  /// gives 2048-channel 3x3 convs (38 M weights each); beyond, allocation would fail first.
  static constexpr int64_t kMaxDepth = 2000, kMaxWidth = 512;
  /// Throws std::invalid_argument unless depth = 6k + 2 with 8 <= depth <= kMaxDepth and
  /// 1 <= width <= kMaxWidth.
  CifarResNet(int64_t depth, int64_t width, int64_t num_classes, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "CifarResNet"; }
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<Sequential> blocks;
  std::shared_ptr<Linear> fc;
};

}  // namespace minidl
