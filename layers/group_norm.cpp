#include "layers/group_norm.hpp"

#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

GroupNorm::GroupNorm(const GroupNormOptions& o)
    : num_groups(o.num_groups_), num_channels(o.num_channels_), eps(o.eps_) {
  if (num_groups < 1 || num_channels < 1 || num_channels % num_groups != 0 || !(eps > 0.0f)) {
    throw std::invalid_argument(
        "GroupNorm: expected num_groups >= 1 dividing num_channels, and eps > 0, got "
        "num_groups " +
        std::to_string(num_groups) + ", num_channels " + std::to_string(num_channels) + ", eps " +
        std::to_string(eps));
  }
  if (o.affine_) {
    weight = register_parameter("weight", Tensor::full({num_channels}, 1.0f));
    bias = register_parameter("bias", Tensor({num_channels}));
  }
}

Tensor GroupNorm::forward(const Tensor& x) {
  if (x.dim() < 2 || x.size(1) != num_channels) {
    throw std::invalid_argument("GroupNorm(" + std::to_string(num_groups) + ", " +
                                std::to_string(num_channels) + "): expected input [N, " +
                                std::to_string(num_channels) + ", *], got " + shape_str(x.shape()));
  }
  return ops::group_norm(x, num_groups, weight, bias, eps);
}

}  // namespace minidl
