// minidl — VGG-A for CIFAR-10 (Simonyan & Zisserman, "Very Deep Convolutional Networks for
// Large-Scale Image Recognition", ICLR 2015, Table 1 configuration A, 11 weight layers), with and
// without BatchNorm, as used for CIFAR-10 by Santurkar et al., "How Does Batch Normalization Help
// Optimization?" (NeurIPS 2018). Names and initialization follow torchvision's
// torchvision/models/vgg.py (vgg11, vgg11_bn; make_layers(cfgs["A"]), _initialize_weights).
//
//   features: configuration A, 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M, where a
//     number is conv 3x3 (stride 1, padding 1) - [BN] - ReLU with that many output channels and
//     M is max-pool 2x2 stride 2. Widths are divided by the width divisor k.
//   classifier: Linear(512 / k -> num_classes) on the flattened features.
// Shape: [N, 3, 32, 32] -> features [N, 512 / k, 1, 1] (five pools: 32 -> 16 -> 8 -> 4 -> 2 -> 1)
//   -> flatten [N, 512 / k] -> logits [N, num_classes]. Any other input shape is an error
//   (std::invalid_argument).
//
// Registered names ("vgg11[_bn][_w<k>]"):
//   vgg11        no BN; 9,225,610 parameters
//   vgg11_bn     BN after every conv; 9,228,362 parameters (+ 5,504 buffer values)
//   vgg11_w<k>, vgg11_bn_w<k>   every conv width divided by k, k in {1, 2, 4, 8, 16, 32, 64}
//                (k must divide 64, the narrowest width; others are refused). vgg11_bn_w4 is
//                16, M, 32, M, 64, 64, M, 128, 128, M, 128, 128, M, then Linear(128 -> 10).
//   vgg11_w4     578,410 parameters
//   vgg11_bn_w4  579,098 parameters (+ 1,376 buffer values)
//   vgg11_noisybn[_w<k>]  vgg11_bn[_w<k>] with an ActivationNoise layer after every BN
//                (layers/activation_noise.hpp; Santurkar et al.'s "noisy BatchNorm"): features.0
//                conv, .1 BN, .2 noise, .3 ReLU, .4 max-pool, ...; same tensors and parameter
//                count as vgg11_bn[_w<k>]. The noise stream is seeded from the model seed and is
//                not saved in checkpoints.
//   (parameters = learned tensors' values with num_classes = 10; buffers = BN running_mean and
//   running_var; counted by tests/test_vgg.cpp.)
//
// Names (state_dict), as torchvision's: a Sequential `features` whose children are indexed in
// the order of the layers, ReLU and max-pool included (they have no tensors but take an index):
//   vgg11_bn: features.0 conv, features.1 BN, features.2 ReLU, features.3 max-pool,
//     features.4 conv, features.5 BN, ... features.28 max-pool; keys features.0.weight,
//     features.1.{weight,bias,running_mean,running_var}, features.4.weight, ...
//   vgg11: features.0 conv, features.1 ReLU, features.2 max-pool, features.3 conv, ...
//     features.20 max-pool; keys features.0.{weight,bias}, features.3.{weight,bias}, ...
//   classifier.{weight,bias}.
// Differences from torchvision:
// - torchvision's classifier is a 3-layer MLP (classifier.0, .3, .6: Linear(512*7*7 -> 4096),
//   ReLU, Dropout, Linear(4096 -> 4096), ReLU, Dropout, Linear(4096 -> 1000)) after an adaptive
//   average pool to 7x7, made for 224x224 ImageNet inputs. minidl uses the single
//   Linear(512 -> 10) of the CIFAR VGGs in Santurkar et al.'s experiments (a 32x32 input is 1x1
//   after the five pools), named `classifier` (keys classifier.weight, classifier.bias).
// - vgg11_bn's convs have no bias: each is followed by BN, whose mean subtraction cancels a
//   per-channel bias, so it would only add parameters with zero gradient. torchvision keeps
//   them (features.0.bias, ...), so a torchvision vgg11_bn state_dict has those extra keys, and
//   num_batches_tracked, which minidl does not keep. Plain vgg11's convs have a bias, as
//   torchvision's.
//
// Initialization (torchvision's VGG._initialize_weights): conv weights kaiming_normal_ with
// mode fan_out, ReLU gain (N(0, 2 / (out_channels * 9)), layers/module.hpp), conv biases 0;
// BN weight 1, bias 0 (or weight U[0, 1) with ModelOptions::bn_init = "uniform", as for the
// ResNets); classifier weight N(0, 0.01^2), bias 0. The seed's stream is drawn in module order:
// every conv weight, then the classifier weight, then (bn_init uniform) every BN weight. So
// vgg11_w<k> and vgg11_bn_w<k> built with the same seed have the same conv and classifier
// weights.
//
// Forward: each BN - ReLU pair runs as one fused op (BatchNorm::forward_relu); the ReLU module
// keeps its index in `features`, for the names. Calling features->forward(x) instead gives the
// same values unfused.
#pragma once

#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/sequential.hpp"

namespace minidl {

class VGG : public Module {
 public:
  /// Largest width divisor: 64 makes the first conv 1 channel wide.
  static constexpr int64_t kMaxWidthDivisor = 64;
  /// True when k divides 64 (1, 2, 4, ..., 64).
  static bool valid_width_divisor(int64_t k) {
    return k >= 1 && k <= kMaxWidthDivisor && 64 % k == 0;
  }
  /// VGG-A with every conv width divided by `width_divisor`, BN after every conv when
  /// `batch_norm`. Initialized as torchvision does (see above) with BN weight 1. Throws
  /// std::invalid_argument unless valid_width_divisor(width_divisor) and num_classes >= 1.
  /// With `noisy_bn` (requires batch_norm), an ActivationNoise layer follows every BN (the
  /// "noisy BN" network of Santurkar et al., Section 2.1), seeded from `noise_seed`; it takes an
  /// index in `features` (so vgg11_noisybn's names differ from vgg11_bn's after features.1) and
  /// holds no tensors.
  VGG(int64_t width_divisor, bool batch_norm, int64_t num_classes, Generator& gen,
      bool noisy_bn = false, uint64_t noise_seed = 0);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "VGG"; }
  std::shared_ptr<Sequential> features;
  std::shared_ptr<Linear> classifier;
};

}  // namespace minidl
