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

/// Linear's settings, as libtorch's torch::nn::LinearOptions (bias true by default):
///   Linear(LinearOptions(512, 10), gen),  Linear(LinearOptions(64, 64).bias(false), gen)
struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  LinearOptions& bias(bool v) {
    bias_ = v;
    return *this;
  }
  int64_t in_features_, out_features_;
  bool bias_ = true;
};

class Linear : public Module {
 public:
  /// Draws the weight (and bias) from `gen`. Throws std::invalid_argument for a size < 1.
  Linear(const LinearOptions& options, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  Tensor weight, bias;
  int64_t in_features, out_features;
};

}  // namespace minidl
