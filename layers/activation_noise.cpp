#include "layers/activation_noise.hpp"

#include <cmath>
#include <stdexcept>

#include "core/autograd.hpp"

namespace minidl {

ActivationNoise::ActivationNoise(int64_t num_features, uint64_t seed, ActivationNoiseOptions o)
    : num_features(num_features), options(o), gen_(seed) {
  if (num_features < 1 || !(o.scale_lo <= o.scale_hi) || !(o.shift_max >= 0.0f) ||
      !(o.std_lo >= 0.0f && o.std_lo <= o.std_hi)) {
    throw std::invalid_argument(
        "ActivationNoise: expected num_features >= 1, scale_lo <= "
        "scale_hi, shift_max >= 0 and 0 <= std_lo <= std_hi");
  }
}

Tensor ActivationNoise::forward(const Tensor& x) {
  if ((x.dim() != 4 && x.dim() != 2) || x.size(1) != num_features) {
    throw std::invalid_argument("ActivationNoise: expected [N, " + std::to_string(num_features) +
                                ", H, W] or [N, " + std::to_string(num_features) + "], got " +
                                shape_str(x.shape()));
  }
  if (!is_training()) return x;
  const int64_t N = x.size(0), C = num_features, HW = x.numel() / (N * C);
  if (!hold) {
    scale_.resize(C);
    std::vector<float> shift(C), sd(C);
    for (int64_t c = 0; c < C; ++c) {
      scale_[c] = gen_.uniform(options.scale_lo, options.scale_hi);
      shift[c] = gen_.uniform(-options.shift_max, options.shift_max);
      sd[c] = gen_.uniform(options.std_lo, options.std_hi);
    }
    // The i.i.d. standardized draws come from a counter-based stream: element i sums the four
    // 16-bit uniforms of splitmix64(key + i) (Irwin-Hall: mean 2, variance 4/12), centred and
    // scaled to mean 0 and variance 1 (a bell shape on [-3.46, 3.46], close to a normal). The
    // draw is the same whatever the thread count, and costs a few ns per element (a Box-Muller
    // normal made noisy BN three times slower than BN).
    const uint64_t key = gen_.next();
    noise_ = Tensor::empty(x.shape());
    float* e = noise_.mutable_data();
    const float kScale = std::sqrt(3.0f) / 65536.0f;  // (sum / 65536 - 2) * sqrt(3)
#pragma omp parallel for collapse(2) schedule(static) if (N * C * HW > 65536)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t o = (n * C + c) * HW;
        const float m = shift[c], s = sd[c];
        for (int64_t i = 0; i < HW; ++i) {
          const uint64_t bits = splitmix64(key + static_cast<uint64_t>(o + i));
          const float sum = static_cast<float>((bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) +
                                               ((bits >> 32) & 0xFFFF) + (bits >> 48));
          e[o + i] = m + s * ((sum - 131070.0f) * kScale);
        }
      }
    }
  } else if (!noise_.defined() || noise_.shape() != x.shape()) {
    throw std::logic_error("ActivationNoise: hold is set but no noise of shape " +
                           shape_str(x.shape()) + " was drawn");
  }
  // y = scale[c] * x + noise
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data();
  const float* e = noise_.data();
  float* yd = y.mutable_data();
  const float* sc = scale_.data();
#pragma omp parallel for collapse(2) schedule(static) if (N * C * HW > 65536)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t o = (n * C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) yd[o + i] = sc[c] * xd[o + i] + e[o + i];
    }
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, scale = scale_, N, C, HW]() mutable {
        // dx += scale[c] * dy   (from y = scale[c] * x + noise)
        const float* dy = out->grad.data();
        float* dx = x.grad_data();
#pragma omp parallel for collapse(2) schedule(static) if (N * C * HW > 65536)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t c = 0; c < C; ++c) {
            const int64_t o = (n * C + c) * HW;
            for (int64_t i = 0; i < HW; ++i) dx[o + i] += scale[c] * dy[o + i];
          }
      },
      "activation_noise");
  return y;
}

}  // namespace minidl
