// minidl — Conv2d (torch.nn.Conv2d with groups = 1, dilation = 1, zero padding).
//
// y[n, o] = b[o] + sum_c weight[o, c] (*) x[n, c]      (cross-correlation)
// Shape (letters of core/ops.hpp's legend; C = in_channels, O = out_channels,
//   KH = KW = kernel_size):
//   input [N, C, H, W] -> output [N, O, HO, WO],
//   HO = (H + 2 padding - KH) / stride + 1 (integer division), likewise WO.
// Parameters: weight [O, C, KH, KW], Kaiming normal (fan_in); bias [O] when bias = true (zero
//   init). A conv followed by BatchNorm
//   needs no bias: BN subtracts the per-channel mean, which cancels it.
// Errors: std::invalid_argument when the input is not [N, in_channels, H, W].
#pragma once

#include "layers/module.hpp"

namespace minidl {

/// Conv2d's settings, named as libtorch's torch::nn::Conv2dOptions and with torch.nn.Conv2d's
/// defaults (stride 1, padding 0, bias true):
///   Conv2d(Conv2dOptions(3, 16, 3).padding(1).bias(false), gen)
struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  Conv2dOptions& stride(int64_t v) {
    stride_ = v;
    return *this;
  }
  Conv2dOptions& padding(int64_t v) {
    padding_ = v;
    return *this;
  }
  Conv2dOptions& bias(bool v) {
    bias_ = v;
    return *this;
  }
  int64_t in_channels_, out_channels_, kernel_size_, stride_ = 1, padding_ = 0;
  bool bias_ = true;
};

class Conv2d : public Module {
 public:
  /// Draws the weight from `gen`. Throws std::invalid_argument for a size or stride < 1 or a
  /// negative padding.
  Conv2d(const Conv2dOptions& options, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  Tensor weight, bias;
  int64_t in_channels, out_channels, kernel_size, stride, padding;
};

}  // namespace minidl
