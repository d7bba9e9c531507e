// minidl — the parameter-free layers: Identity, ReLU, GELU, MaxPool2d, GlobalAvgPool2d, Flatten
// (torch.nn names). Each but Identity is a thin Module over one op in core/ops.hpp, which documents
// the math.
#pragma once

#include "core/ops.hpp"
#include "layers/module.hpp"

namespace minidl {

/// torch.nn.Identity: y = x (the same tensor, no op recorded). Any shape. A placeholder where a
/// model has no layer (a ResNet's `--norm none`).
class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

/// torch.nn.ReLU: y = max(x, 0). Any shape -> same shape.
class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

/// torch.nn.GELU (approximate = "none"): y = x * Phi(x), Phi the standard normal CDF
/// (ops::gelu). Any shape -> same shape.
class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::gelu(x); }
  std::string type_name() const override { return "GELU"; }
};

/// torch.nn.MaxPool2d(kernel_size, stride = kernel_size, padding = 0).
/// [N, C, H, W] -> [N, C, (H + 2 padding - kernel_size) / stride + 1, ...].
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0)
      : kernel_size(kernel_size), stride(stride ? stride : kernel_size), padding(padding) {}
  Tensor forward(const Tensor& x) override {
    return ops::max_pool2d(x, kernel_size, stride, padding);
  }
  std::string type_name() const override { return "MaxPool2d"; }
  int64_t kernel_size, stride, padding;
};

/// Mean over H, W: [N, C, H, W] -> [N, C] (torch: AdaptiveAvgPool2d(1) + Flatten).
class GlobalAvgPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::global_avg_pool2d(x); }
  std::string type_name() const override { return "GlobalAvgPool2d"; }
};

/// torch.nn.Flatten: [N, ...] -> [N, prod(...)].
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::flatten(x); }
  std::string type_name() const override { return "Flatten"; }
};

}  // namespace minidl
