// minidl — max_pool2d and global_avg_pool2d, forward and backward.
//   max_pool2d:  y[n,c,oh,ow] = max over the window; saved: argmax (flat index into H*W);
//                dx[argmax] += dy.
//   global_avg_pool2d: y[n,c] = sum_{h,w} x[n,c,h,w] / (H W);  dx = dy / (H W).
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"

namespace minidl::ops {

using detail::check;

Tensor max_pool2d(const Tensor& x, int64_t kernel_size, int64_t stride, int64_t padding) {
  profiler::Scope _prof("max_pool2d");
  check(x.dim() == 4, "max_pool2d", "input [N, C, H, W]", x);
  if (kernel_size < 1 || stride < 1 || padding < 0 || 2 * padding > kernel_size) {
    throw std::invalid_argument("max_pool2d: need kernel_size >= 1, stride >= 1 and "
                                "0 <= padding <= kernel_size / 2, got kernel_size " +
                                std::to_string(kernel_size) + ", stride " +
                                std::to_string(stride) + ", padding " + std::to_string(padding));
  }
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (H + 2 * padding < kernel_size || W + 2 * padding < kernel_size) {
    throw std::invalid_argument("max_pool2d: kernel_size " + std::to_string(kernel_size) +
                                " larger than input " + shape_str(x.shape()));
  }
  const int64_t HO = (H + 2 * padding - kernel_size) / stride + 1;
  const int64_t WO = (W + 2 * padding - kernel_size) / stride + 1;
  Tensor y = Tensor::empty({N, C, HO, WO});
  std::vector<int32_t> argmax(N * C * HO * WO);
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < N * C; ++nc) {
    const float* p = xd + nc * H * W;
    for (int64_t oh = 0; oh < HO; ++oh) {
      for (int64_t ow = 0; ow < WO; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int32_t arg = -1;
        for (int64_t kh = 0; kh < kernel_size; ++kh) {
          const int64_t ih = oh * stride - padding + kh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < kernel_size; ++kw) {
            const int64_t iw = ow * stride - padding + kw;
            if (iw < 0 || iw >= W) continue;
            const float v = p[ih * W + iw];
            if (v > best || arg < 0 || std::isnan(v)) {
              best = v;
              arg = static_cast<int32_t>(ih * W + iw);
            }
          }
        }
        const int64_t o = (nc * HO + oh) * WO + ow;
        yd[o] = best;
        argmax[o] = arg;
      }
    }
  }
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, argmax = std::move(argmax), N, C, H, W, HO, WO]() mutable {
        const float* dy = out->grad.data();
        float* dx = x.grad_data();
#pragma omp parallel for schedule(static)
        for (int64_t nc = 0; nc < N * C; ++nc) {
          for (int64_t i = 0; i < HO * WO; ++i) {
            const int64_t o = nc * HO * WO + i;
            dx[nc * H * W + argmax[o]] += dy[o];
          }
        }
      },
      "max_pool2d");
  return y;
}

Tensor global_avg_pool2d(const Tensor& x) {
  profiler::Scope _prof("global_avg_pool2d");
  check(x.dim() == 4, "global_avg_pool2d", "input [N, C, H, W]", x);
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2) * x.size(3);
  Tensor y({N, C});
  const float* xd = x.data();
  float* yd = y.data();
  for (int64_t nc = 0; nc < N * C; ++nc) {
    double s = 0.0;
    for (int64_t i = 0; i < S; ++i) s += xd[nc * S + i];
    yd[nc] = static_cast<float>(s / static_cast<double>(S));
  }
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, N, C, S]() mutable {
        const float* dy = out->grad.data();
        float* dx = x.grad_data();
        const float inv = 1.0f / static_cast<float>(S);
        for (int64_t nc = 0; nc < N * C; ++nc)
          for (int64_t i = 0; i < S; ++i) dx[nc * S + i] += dy[nc] * inv;
      },
      "global_avg_pool2d");
  return y;
}

}  // namespace minidl::ops
