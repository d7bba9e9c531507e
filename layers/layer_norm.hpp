// minidl — LayerNorm (torch.nn.LayerNorm; Ba, Kiros & Hinton, "Layer Normalization", 2016).
//
//   y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias        (Ba et al. 2016, eq. 3-4)
//
// Mean and (biased) variance are over the trailing dimensions given by normalized_shape, for
// each leading index on its own (each sample of [N, D], each position of [N, L, D] with
// normalized_shape {D}, each image of [N, C, H, W] with {C, H, W}). weight and bias have the shape
// normalized_shape: an elementwise affine, one gamma and beta per normalized position (with
// {C, H, W}, one per pixel of every channel). No statistic depends on the rest of the batch and
// there are no running buffers: train() and eval() compute the same thing.
// Not what `--norm ln` builds in the ResNets: there "LayerNorm" is Wu & He's conv-net form,
// GroupNorm with one group (statistics over C, H, W, a gamma and beta per channel;
// layers/group_norm.hpp), which does not fix H and W.
// Shape (letters of core/ops.hpp's legend): input [*, normalized_shape...] -> output of the same
//   shape. weight, bias: normalized_shape.
// Parameters (elementwise_affine = true): weight = gamma (init 1), bias = beta (init 0),
//   PyTorch's names and init. Buffers: none.
// Errors: std::invalid_argument from the constructor for an empty normalized_shape, a dimension
//   < 1 or eps <= 0; from forward for an input whose trailing dimensions are not
//   normalized_shape (naming the layer, the expected and the actual shape).
#pragma once

#include <utility>

#include "layers/module.hpp"

namespace minidl {

/// LayerNorm's settings, as libtorch's torch::nn::LayerNormOptions, with torch.nn.LayerNorm's
/// defaults (eps 1e-5, elementwise_affine true):
///   LayerNorm(LayerNormOptions({64}).eps(1e-6f))
struct LayerNormOptions {
  LayerNormOptions(Shape normalized_shape)  // NOLINT: implicit, LayerNorm({64}) reads well
      : normalized_shape_(std::move(normalized_shape)) {}
  LayerNormOptions& eps(float v) {
    eps_ = v;
    return *this;
  }
  LayerNormOptions& elementwise_affine(bool v) {
    elementwise_affine_ = v;
    return *this;
  }
  Shape normalized_shape_;
  float eps_ = 1e-5f;
  bool elementwise_affine_ = true;
};

class LayerNorm : public Module {
 public:
  /// Throws std::invalid_argument for an empty normalized_shape, a dimension < 1 or eps <= 0.
  explicit LayerNorm(const LayerNormOptions& options);
  /// ops::layer_norm(x, normalized_shape, weight, bias, eps); the same in train and eval mode.
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  Tensor weight, bias;  ///< normalized_shape each; undefined when elementwise_affine = false
  Shape normalized_shape;
  float eps;
};

}  // namespace minidl
