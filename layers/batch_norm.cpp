#include "layers/batch_norm.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

BatchNorm::BatchNorm(int64_t c, bool spatial, float eps_, float momentum_, bool affine)
    : num_features(c), eps(eps_), momentum(momentum_), spatial_(spatial) {
  if (affine) {
    weight = register_parameter("weight", Tensor::full({c}, 1.0f));
    bias = register_parameter("bias", Tensor({c}));
  }
  running_mean = register_buffer("running_mean", Tensor({c}));
  running_var = register_buffer("running_var", Tensor::full({c}, 1.0f));
}

Tensor BatchNorm::forward(const Tensor& x) { return run(x, false, Tensor()); }
Tensor BatchNorm::forward_relu(const Tensor& x) { return run(x, true, Tensor()); }
Tensor BatchNorm::forward_add_relu(const Tensor& x, const Tensor& residual) {
  return run(x, true, residual);
}

Tensor BatchNorm::run(const Tensor& x, bool relu, const Tensor& residual) {
  const bool rank_ok = spatial_ ? x.dim() == 4 : (x.dim() == 2 || x.dim() == 3);
  if (!rank_ok || x.size(1) != num_features) {
    throw std::invalid_argument(type_name() + "(" + std::to_string(num_features) +
                                "): expected input " +
                                (spatial_ ? "[N, " + std::to_string(num_features) + ", H, W]"
                                          : "[N, " + std::to_string(num_features) + "]") +
                                ", got " + shape_str(x.shape()));
  }
  if (observer) {
    const int64_t N = x.size(0), C = num_features, S = x.numel() / std::max<int64_t>(1, N * C);
    observer->sum.resize(C, 0.0);
    observer->sum_sq.resize(C, 0.0);
    const float* xd = x.data();
    for (int64_t c = 0; c < C; ++c) {
      double s1 = 0.0, s2 = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float* p = xd + (n * C + c) * S;
        for (int64_t i = 0; i < S; ++i) {
          s1 += p[i];
          s2 += static_cast<double>(p[i]) * p[i];
        }
      }
      observer->sum[c] += s1;
      observer->sum_sq[c] += s2;
    }
    observer->count += N * S;
    if (stop_after_observe) throw StopForward{};
  }
  if (residual.defined()) {
    return ops::batch_norm_add_relu(x, weight, bias, running_mean, running_var, is_training(),
                                    momentum, eps, residual);
  }
  if (relu) {
    return ops::batch_norm_relu(x, weight, bias, running_mean, running_var, is_training(),
                                momentum, eps);
  }
  return ops::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum,
                         eps);
}

}  // namespace minidl
