#include "layers/layer_norm.hpp"

#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

LayerNorm::LayerNorm(const LayerNormOptions& o)
    : normalized_shape(o.normalized_shape_), eps(o.eps_) {
  bool ok = !normalized_shape.empty() && eps > 0.0f;
  for (int64_t d : normalized_shape) ok = ok && d >= 1;
  if (!ok) {
    throw std::invalid_argument(
        "LayerNorm: expected a normalized_shape of one or more dimensions >= 1 and eps > 0, got "
        "normalized_shape " +
        shape_str(normalized_shape) + ", eps " + std::to_string(eps));
  }
  if (o.elementwise_affine_) {
    weight = register_parameter("weight", Tensor::full(normalized_shape, 1.0f));
    bias = register_parameter("bias", Tensor(normalized_shape));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  bool ok = x.dim() >= k;
  for (int64_t i = 0; ok && i < k; ++i) ok = x.size(x.dim() - k + i) == normalized_shape[i];
  if (!ok) {
    throw std::invalid_argument("LayerNorm(" + shape_str(normalized_shape) +
                                "): expected input [*, " + shape_str(normalized_shape).substr(1) +
                                ", got " + shape_str(x.shape()));
  }
  return ops::layer_norm(x, normalized_shape, weight, bias, eps);
}

}  // namespace minidl
