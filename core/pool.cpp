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

namespace {

/// y [NC, HO, WO] = max of x [NC, H, W] over each KH x KW window; argmax [NC, HO, WO] = the
/// flat index (ih * W + iw) of the max, the first one on ties; NaN wins (as in PyTorch).
void max_pool2d_forward(float* y, int32_t* argmax, const float* x, int64_t NC, int64_t H, int64_t W,
                        int64_t HO, int64_t WO, int64_t KH, int64_t KW, int64_t stride,
                        int64_t padding) {
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < NC; ++nc) {
    const float* p = x + nc * H * W;
    for (int64_t oh = 0; oh < HO; ++oh) {
      for (int64_t ow = 0; ow < WO; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int32_t arg = -1;
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int64_t ih = oh * stride - padding + kh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < KW; ++kw) {
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
        y[o] = best;
        argmax[o] = arg;
      }
    }
  }
}

/// max_pool2d_forward for kernel 2, stride 2, padding 0 (every window inside the input), the
/// same values and argmax: the window's four values in the generic loop's order, the first max
/// on ties, NaN wins. About 4x the generic loop's speed (no bounds checks, fixed trip counts).
void max_pool2d_forward_k2s2(float* y, int32_t* argmax, const float* x, int64_t NC, int64_t H,
                             int64_t W, int64_t HO, int64_t WO) {
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < NC; ++nc) {
    const float* p = x + nc * H * W;
    float* yo = y + nc * HO * WO;
    int32_t* ao = argmax + nc * HO * WO;
    for (int64_t oh = 0; oh < HO; ++oh) {
      const int64_t row = 2 * oh * W;
      for (int64_t ow = 0; ow < WO; ++ow) {
        const int64_t i0 = row + 2 * ow;
        const int64_t idx[4] = {i0, i0 + 1, i0 + W, i0 + W + 1};
        float best = p[i0];
        int64_t arg = i0;
        for (int k = 1; k < 4; ++k) {
          const float v = p[idx[k]];
          if (v > best || v != v) {  // v != v: NaN
            best = v;
            arg = idx[k];
          }
        }
        yo[oh * WO + ow] = best;
        ao[oh * WO + ow] = static_cast<int32_t>(arg);
      }
    }
  }
}

/// dx [NC, H, W] at argmax += dy [NC, HO, WO]: each output's gradient goes to the input it took
/// (HW = H * W, HWO = HO * WO).
void max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax, int64_t NC, int64_t HW,
                         int64_t HWO) {
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < NC; ++nc) {
    for (int64_t i = 0; i < HWO; ++i) dx[nc * HW + argmax[nc * HWO + i]] += dy[nc * HWO + i];
  }
}

/// y [NC] = sum_i x [NC, S] / S (accumulated in double).
void global_avg_pool2d_forward(float* y, const float* x, int64_t NC, int64_t S) {
  for (int64_t nc = 0; nc < NC; ++nc) {
    double s = 0.0;
    for (int64_t i = 0; i < S; ++i) s += x[nc * S + i];
    y[nc] = static_cast<float>(s / static_cast<double>(S));
  }
}

/// dx [NC, S] += dy [NC] / S.
void global_avg_pool2d_backward(float* dx, const float* dy, int64_t NC, int64_t S) {
  const float inv = 1.0f / static_cast<float>(S);
  for (int64_t nc = 0; nc < NC; ++nc)
    for (int64_t i = 0; i < S; ++i) dx[nc * S + i] += dy[nc] * inv;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel_size, int64_t stride, int64_t padding) {
  profiler::Scope _prof("max_pool2d");
  check(x.dim() == 4, "max_pool2d", "input [N, C, H, W]", x);
  if (kernel_size < 1 || stride < 1 || padding < 0 || 2 * padding > kernel_size) {
    throw std::invalid_argument(
        "max_pool2d: need kernel_size >= 1, stride >= 1 and "
        "0 <= padding <= kernel_size / 2, got kernel_size " +
        std::to_string(kernel_size) + ", stride " + std::to_string(stride) + ", padding " +
        std::to_string(padding));
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
  if (kernel_size == 2 && stride == 2 && padding == 0) {
    max_pool2d_forward_k2s2(y.mutable_data(), argmax.data(), x.data(), N * C, H, W, HO, WO);
  } else {
    max_pool2d_forward(y.mutable_data(), argmax.data(), x.data(), N * C, H, W, HO, WO, kernel_size,
                       kernel_size, stride, padding);
  }
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, argmax = std::move(argmax), N, C, H, W, HO, WO]() {
        max_pool2d_backward(x.grad_data(), out->grad.data(), argmax.data(), N * C, H * W, HO * WO);
      },
      "max_pool2d");
  return y;
}

Tensor global_avg_pool2d(const Tensor& x) {
  profiler::Scope _prof("global_avg_pool2d");
  check(x.dim() == 4, "global_avg_pool2d", "input [N, C, H, W]", x);
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2) * x.size(3);
  Tensor y = Tensor::empty({N, C});
  global_avg_pool2d_forward(y.mutable_data(), x.data(), N * C, S);
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, N, C, S]() {
        global_avg_pool2d_backward(x.grad_data(), out->grad.data(), N * C, S);
      },
      "global_avg_pool2d");
  return y;
}

}  // namespace minidl::ops
