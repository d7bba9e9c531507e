#include "group_norm.hpp"

#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/autograd.hpp"

namespace custom {

void group_norm_forward(float* out, float* x_hat, float* inv_std, const float* x,
                        const float* weight, const float* bias, int64_t N, int64_t C, int64_t HW,
                        int64_t G, float eps) {
  const int64_t per_group = C / G * HW;  // values normalized together
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = (n * C + g * (C / G)) * HW;
      double sum = 0.0, sq = 0.0;
      for (int64_t i = 0; i < per_group; ++i) sum += x[base + i];
      const double mean = sum / per_group;
      for (int64_t i = 0; i < per_group; ++i) sq += (x[base + i] - mean) * (x[base + i] - mean);
      const float rstd = static_cast<float>(1.0 / std::sqrt(sq / per_group + eps));
      inv_std[n * G + g] = rstd;
      for (int64_t i = 0; i < per_group; ++i) {
        const int64_t c = g * (C / G) + i / HW;
        x_hat[base + i] = static_cast<float>((x[base + i] - mean) * rstd);
        out[base + i] = weight[c] * x_hat[base + i] + bias[c];  // y = weight * x_hat + bias
      }
    }
  }
}

void group_norm_backward(float* dx, float* dweight, float* dbias, const float* dout,
                         const float* x_hat, const float* inv_std, const float* weight, int64_t N,
                         int64_t C, int64_t HW, int64_t G) {
  const int64_t per_group = C / G * HW;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = (n * C + g * (C / G)) * HW;
      // From y = weight * x_hat + bias: dweight += dy * x_hat, dbias += dy, dx_hat = dy * weight.
      double s = 0.0, sx = 0.0;  // sum of dx_hat and of dx_hat * x_hat over the group
      for (int64_t i = 0; i < per_group; ++i) {
        const int64_t c = g * (C / G) + i / HW;
        const float dxh = dout[base + i] * weight[c];
        s += dxh;
        sx += dxh * x_hat[base + i];
        if (dweight) dweight[c] += dout[base + i] * x_hat[base + i];
        if (dbias) dbias[c] += dout[base + i];
      }
      // From x_hat = (x - mean) * inv_std with mean and var of the group:
      //   dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
      if (!dx) continue;
      const float rstd = inv_std[n * G + g];
      for (int64_t i = 0; i < per_group; ++i) {
        const int64_t c = g * (C / G) + i / HW;
        const double dxh = dout[base + i] * weight[c];
        dx[base + i] +=
            static_cast<float>(rstd * (dxh - s / per_group - x_hat[base + i] * sx / per_group));
      }
    }
  }
}

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, float eps)
    : num_groups(num_groups), num_channels(num_channels), eps(eps) {
  if (num_groups < 1 || num_channels < 1 || num_channels % num_groups != 0) {
    throw std::invalid_argument("GroupNorm: num_groups must divide num_channels, got " +
                                std::to_string(num_groups) + " and " +
                                std::to_string(num_channels));
  }
  weight = register_parameter("weight", minidl::Tensor::full({num_channels}, 1.0f));
  bias = register_parameter("bias", minidl::Tensor::zeros({num_channels}));
}

minidl::Tensor GroupNorm::forward(const minidl::Tensor& x) {
  using minidl::Tensor;
  if (x.dim() != 4 || x.size(1) != num_channels) {
    throw std::invalid_argument("GroupNorm: expected [N, " + std::to_string(num_channels) +
                                ", H, W], got " + minidl::shape_str(x.shape()));
  }
  const int64_t N = x.size(0), C = num_channels, HW = x.size(2) * x.size(3), G = num_groups;
  Tensor y = Tensor::empty(x.shape());
  auto x_hat = std::make_shared<std::vector<float>>(x.numel());
  auto inv_std = std::make_shared<std::vector<float>>(N * G);
  group_norm_forward(y.mutable_data(), x_hat->data(), inv_std->data(), x.data(), weight.data(),
                     bias.data(), N, C, HW, G, eps);
  if (!minidl::needs_graph({&x, &weight, &bias})) return y;
  // The autograd adapter: read the output's gradient, call the backward function.
  minidl::TensorImpl* out = y.impl();
  Tensor w = weight, b = bias;
  minidl::attach_node(
      y, {x, w, b},
      [x, w, b, out, x_hat, inv_std, N, C, HW, G]() {
        group_norm_backward(x.requires_grad() ? x.grad_data() : nullptr,
                            w.requires_grad() ? w.grad_data() : nullptr,
                            b.requires_grad() ? b.grad_data() : nullptr, out->grad.data(),
                            x_hat->data(), inv_std->data(), w.data(), N, C, HW, G);
      },
      "group_norm");
  return y;
}

}  // namespace custom
