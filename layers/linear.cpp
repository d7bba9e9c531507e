#include "layers/linear.hpp"

#include <cmath>

#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator& gen)
    : in_features(in), out_features(out) {
  weight = register_parameter("weight", Tensor({out, in}));
  kaiming_normal_(weight, gen);
  if (with_bias) {
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
