#include "layers/linear.hpp"

#include <cmath>

#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

Linear::Linear(const LinearOptions& o, Generator& gen)
    : in_features(o.in_features_), out_features(o.out_features_) {
  const int64_t in = in_features, out = out_features;
  if (in < 1 || out < 1) {
    throw std::invalid_argument("Linear: expected in_features and out_features >= 1");
  }
  weight = register_parameter("weight", Tensor({out, in}));
  kaiming_normal_(weight, gen);
  if (o.bias_) {
    bias = register_parameter("bias", Tensor({out}));
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() != 2 || x.size(1) != in_features) {
    throw std::invalid_argument("Linear(" + std::to_string(in_features) + ", " +
                                std::to_string(out_features) + "): expected input [N, " +
                                std::to_string(in_features) + "], got " + shape_str(x.shape()));
  }
  return ops::linear(x, weight, bias);
}

}  // namespace minidl
