// minidl — Conv2d (torch.nn.Conv2d with groups = 1, dilation = 1, zero padding).
//
// y[n, o] = b[o] + sum_c weight[o, c] (*) x[n, c]      (cross-correlation)
// Shape: input [N, in_channels, H, W] -> output [N, out_channels, H_out, W_out],
//   H_out = (H + 2 padding - kernel_size) / stride + 1 (integer division), likewise W_out.
// Parameters: weight [out_channels, in_channels, kernel_size, kernel_size], Kaiming normal
//   (fan_in); bias [out_channels] when bias = true (zero init). A conv followed by BatchNorm
//   needs no bias: BN subtracts the per-channel mean, which cancels it.
// Errors: std::invalid_argument when the input is not [N, in_channels, H, W].
#pragma once

#include "layers/module.hpp"

namespace minidl {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
         int64_t padding, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  Tensor weight, bias;
  int64_t in_channels, out_channels, kernel_size, stride, padding;
};

}  // namespace minidl
