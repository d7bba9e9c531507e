// minidl — batch_norm forward and backward, fused per channel.
//
// Legend: x [N, C, S] where S = H * W (S = 1 for [N, C]); M = N * S values per channel.
// Training (Ioffe & Szegedy 2015, Algorithm 1):
//   mean = sum(x) / M,  var = sum((x - mean)^2) / M      (biased, used to normalize)
//   inv_std = 1 / sqrt(var + eps),  x_hat = (x - mean) * inv_std,  y = gamma * x_hat + beta
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)   (unbiased)
// Backward of y = gamma * x_hat + beta with batch statistics:
//   dbeta = sum(dy),  dgamma = sum(dy * x_hat)
//   dx = gamma * inv_std / M * (M * dy - dbeta - x_hat * dgamma)
// Eval: mean/var are the running buffers (constants), so dx = gamma * inv_std * dy.
// Saved for backward: mean and inv_std per channel (x_hat is recomputed from x).
// The per-row sums are vectorized (omp simd reductions: lane-wise partial sums, then combined),
// float within a row of S values, double across rows.
// Fused ReLU (batch_norm_relu): y = max(bn(x), 0) in the same pass; backward uses
// dy' = dy * (y > 0) in place of dy in every formula above.
// Fused residual (batch_norm_add_relu): y = max(bn(x) + r, 0); dr += dy * (y > 0).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"

namespace minidl::ops {

using detail::check;

static Tensor batch_norm_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              Tensor running_mean, Tensor running_var, bool training,
                              float momentum, float eps, bool relu, const Tensor& residual) {
  check(x.dim() >= 2, "batch_norm", "input [N, C] or [N, C, H, W]", x);
  const int64_t N = x.size(0), C = x.size(1), S = (N * C) > 0 ? x.numel() / (N * C) : 0;
  const int64_t M = N * S;
  const std::string c_shape = "[" + std::to_string(C) + "]";
  for (const Tensor* p : {&weight, &bias, static_cast<const Tensor*>(&running_mean),
                          static_cast<const Tensor*>(&running_var)}) {
    if (p->defined()) check(p->dim() == 1 && p->size(0) == C, "batch_norm", c_shape, *p);
  }
  if (!training && !(running_mean.defined() && running_var.defined())) {
    throw std::invalid_argument("batch_norm: eval mode needs running_mean and running_var");
  }
  if (residual.defined()) check(residual.shape() == x.shape(), "batch_norm_add_relu",
                                "residual of x's shape " + shape_str(x.shape()), residual);
  if (training && M <= 1) {
    throw std::invalid_argument(
        "batch_norm: expected more than 1 value per channel when training, got input shape " +
        shape_str(x.shape()) + " (use eval mode, or a batch larger than 1)");
  }

  std::vector<float> mean(C), inv_std(C);
  const float* xd = x.data();
  if (training) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      // One pass: sum and sum of squares around a shift (the first value) keep the variance
      // accurate when |mean| >> std; float partial sums per row, double across rows.
      const float shift = xd[c * S];
      double sum = 0.0, sq = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float* p = xd + (n * C + c) * S;
        float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = 0; i < S; ++i) {
          const float d = p[i] - shift;
          s1 += d;
          s2 += d * d;
        }
        sum += s1;
        sq += s2;
      }
      const double dmean = sum / static_cast<double>(M);
      const double mu = shift + dmean;
      sq -= dmean * dmean * static_cast<double>(M);
      if (sq < 0) sq = 0;
      const double var = sq / static_cast<double>(M);
      mean[c] = static_cast<float>(mu);
      inv_std[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
      if (running_mean.defined()) {
        float& rm = running_mean.data()[c];
        rm = static_cast<float>((1.0 - momentum) * rm + momentum * mu);
      }
      if (running_var.defined()) {
        float& rv = running_var.data()[c];
        const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
        rv = static_cast<float>((1.0 - momentum) * rv + momentum * unbiased);
      }
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = running_mean.data()[c];
      inv_std[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var.data()[c]) + eps));
    }
  }

  Tensor y = Tensor::empty(x.shape());
  float* yd = y.data();
  const float* gd = weight.defined() ? weight.data() : nullptr;
  const float* bd = bias.defined() ? bias.data() : nullptr;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const float scale = (gd ? gd[c] : 1.0f) * inv_std[c];
      const float shift = (bd ? bd[c] : 0.0f) - mean[c] * scale;
      const float* p = xd + (n * C + c) * S;
      float* q = yd + (n * C + c) * S;
      if (residual.defined()) {
        const float* r = residual.data() + (n * C + c) * S;
        for (int64_t i = 0; i < S; ++i) q[i] = std::max(p[i] * scale + shift + r[i], 0.0f);
      } else if (relu) {
        for (int64_t i = 0; i < S; ++i) q[i] = std::max(p[i] * scale + shift, 0.0f);
      } else {
        for (int64_t i = 0; i < S; ++i) q[i] = p[i] * scale + shift;
      }
    }
  }

  if (!needs_graph({&x, &weight, &bias, &residual})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias, residual},
      [x, weight, bias, residual, out, mean = std::move(mean), inv_std = std::move(inv_std),
       training, N, C, S, M, relu]() mutable {
        const float* dy = out->grad.data();
        // With the fused ReLU, dy' = dy * (y > 0), applied on the fly from the saved output.
        const float* yd = out->storage->data();
        const float* xd = x.data();
        bool dx_fresh = false, dr_fresh = false;  // fresh: assign instead of accumulate
        float* dgamma = detail::grad_or_null(weight);
        float* dbeta = detail::grad_or_null(bias);
        const float* gd = weight.defined() ? weight.data() : nullptr;
        // The residual's gradient dy * (y > 0) is written in pass 1 below. dr is requested
        // before dx: when x and residual are one tensor, a fresh buffer is assigned by pass 1
        // and then accumulated into by pass 2 of the same channel.
        float* dr = detail::grad_for_write_or_null(residual, &dr_fresh);
        float* dx = detail::grad_for_write_or_null(x, &dx_fresh);
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < C; ++c) {
          const float mu = mean[c], is = inv_std[c];
          // dbeta = sum(dy), dgamma = sum(dy * x_hat). Every load is unconditional, so the
          // ReLU mask is a vector select.
          double sum_dy = 0.0, sum_dy_xhat = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const float* __restrict p = xd + (n * C + c) * S;
            const float* __restrict g = dy + (n * C + c) * S;
            const float* __restrict yo = yd + (n * C + c) * S;
            float s1 = 0.0f, s2 = 0.0f;
            if (relu) {
#pragma omp simd reduction(+ : s1, s2)
              for (int64_t i = 0; i < S; ++i) {
                const float gv = g[i], yv = yo[i], xv = p[i];
                const float gi = yv > 0.0f ? gv : 0.0f;
                s1 += gi;
                s2 += gi * ((xv - mu) * is);
              }
            } else {
#pragma omp simd reduction(+ : s1, s2)
              for (int64_t i = 0; i < S; ++i) {
                s1 += g[i];
                s2 += g[i] * ((p[i] - mu) * is);
              }
            }
            if (dr) {
              float* __restrict r = dr + (n * C + c) * S;
              if (dr_fresh) {
                for (int64_t i = 0; i < S; ++i) {
                  const float gv = g[i];
                  r[i] = yo[i] > 0.0f ? gv : 0.0f;
                }
              } else {
                for (int64_t i = 0; i < S; ++i) {
                  const float gv = g[i];
                  r[i] += yo[i] > 0.0f ? gv : 0.0f;
                }
              }
            }
            sum_dy += s1;
            sum_dy_xhat += s2;
          }
          if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
          if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
          if (!dx) continue;
          const float gamma = gd ? gd[c] : 1.0f;
          // Training: dx = gamma * inv_std / M * (M * dy - dbeta - x_hat * dgamma).
          // Eval: y = gamma * (x - running_mean) * inv_std + beta  =>  dx = gamma * inv_std * dy
          // (x is not read, so an infinite x cannot turn into 0 * inf = NaN).
          const float k = gamma * is;
          const float a = training ? static_cast<float>(sum_dy / M) : 0.0f;
          const float b = training ? static_cast<float>(sum_dy_xhat / M) : 0.0f;
          for (int64_t n = 0; n < N; ++n) {
            const float* __restrict p = xd + (n * C + c) * S;
            const float* __restrict g = dy + (n * C + c) * S;
            const float* __restrict yo = yd + (n * C + c) * S;
            float* d = dx + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) {
              const float gv = g[i], yv = yo[i], xv = p[i];
              const float gi = (relu && !(yv > 0.0f)) ? 0.0f : gv;
              const float v = training ? k * (gi - a - (xv - mu) * is * b) : k * gi;
              d[i] = dx_fresh ? v : d[i] + v;
            }
          }
        }
      },
      residual.defined() ? "batch_norm_add_relu" : relu ? "batch_norm_relu" : "batch_norm");
  return y;
}

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  Tensor running_mean, Tensor running_var, bool training, float momentum,
                  float eps) {
  profiler::Scope _prof("batch_norm");
  return batch_norm_impl(x, weight, bias, running_mean, running_var, training, momentum, eps,
                         false, Tensor());
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                       Tensor running_mean, Tensor running_var, bool training, float momentum,
                       float eps) {
  profiler::Scope _prof("batch_norm_relu");
  return batch_norm_impl(x, weight, bias, running_mean, running_var, training, momentum, eps,
                         true, Tensor());
}

Tensor batch_norm_add_relu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Tensor running_mean, Tensor running_var, bool training,
                           float momentum, float eps, const Tensor& residual) {
  profiler::Scope _prof("batch_norm_add_relu");
  if (!residual.defined()) throw std::invalid_argument("batch_norm_add_relu: residual undefined");
  return batch_norm_impl(x, weight, bias, running_mean, running_var, training, momentum, eps,
                         true, residual);
}

}  // namespace minidl::ops
