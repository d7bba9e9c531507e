#include "layers/batch_norm.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

BatchNorm::BatchNorm(const BatchNormOptions& o, bool spatial)
    : num_features(o.num_features_), eps(o.eps_), momentum(o.momentum_), spatial_(spatial) {
  const int64_t c = num_features;
  if (c < 1 || !(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f)) {
    throw std::invalid_argument(
        "BatchNorm: expected num_features >= 1, eps > 0 and momentum in "
        "[0, 1]");
  }
  if (o.affine_) {
    weight = register_parameter("weight", Tensor::full({c}, 1.0f));
    bias = register_parameter("bias", Tensor({c}));
  }
  running_mean = register_buffer("running_mean", Tensor({c}));
  running_var = register_buffer("running_var", Tensor::full({c}, 1.0f));
}

Tensor BatchNorm::forward(const Tensor& x) { return run(x, false, Tensor()); }
Tensor BatchNorm::forward_relu(const Tensor& x) {
  run_forward_pre_hooks(x);  // a fused entry point: operator() is bypassed
  return run(x, true, Tensor());
}
Tensor BatchNorm::forward_add_relu(const Tensor& x, const Tensor& residual) {
  run_forward_pre_hooks(x);
  return run(x, true, residual);
}

Tensor BatchNorm::run(const Tensor& x, bool relu, const Tensor& residual) {
  const bool rank_ok = spatial_ ? x.dim() == 4 : (x.dim() == 2 || x.dim() == 3);
  if (!rank_ok || x.size(1) != num_features) {
    throw std::invalid_argument(type_name() + "(" + std::to_string(num_features) +
                                "): expected input " +
                                (spatial_ ? "[N, " + std::to_string(num_features) + ", H, W]"
                                          : "[N, " + std::to_string(num_features) + "] or [N, " +
                                                std::to_string(num_features) + ", L]") +
                                ", got " + shape_str(x.shape()));
  }
  if (residual.defined()) {
    return ops::batch_norm_add_relu(x, weight, bias, running_mean, running_var, is_training(),
                                    momentum, eps, residual);
  }
  if (relu) {
    return ops::batch_norm_relu(x, weight, bias, running_mean, running_var, is_training(), momentum,
                                eps);
  }
  return ops::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps);
}

}  // namespace minidl
