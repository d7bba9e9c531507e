// minidl — Linear (torch.nn.Linear).
//
// y = x W^T + b
// Shape: input [N, in_features] -> output [N, out_features].
// Parameters: weight [out_features, in_features] (Kaiming normal, fan_in, as open_lth
//   initializes), bias [out_features] (U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's
//   default) when bias = true.
// Errors: std::invalid_argument when the input is not [N, in_features] (names the layer).
#pragma once

#include "layers/module.hpp"

namespace minidl {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  Tensor weight, bias;
  int64_t in_features, out_features;
};

}  // namespace minidl
