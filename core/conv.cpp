// minidl — conv2d forward and backward (im2col + sgemm, one image per OpenMP iteration).
//
// Per image n, with col = im2col(x[n]) of shape [C_in*KH*KW, HO*WO]:
//   forward:  y[n] = W col + b                    W viewed as [C_out, C_in*KH*KW]
//   backward: dW  += dy[n] col^T                  (skipped when W is frozen)
//             db  += sum over HO*WO of dy[n]
//             dx[n] = col2im(W^T dy[n])           (skipped when x needs no gradient)
// For stride 1 and a square kernel, dx is itself a convolution: dx[n] = Wf * dy[n] with
// Wf[c, o, kh, kw] = W[o, c, K-1-kh, K-1-kw] and padding K-1-padding, so it is computed as
// im2col(dy[n]) and one GEMM that accumulates into dx — a gather instead of col2im's scatter.
// Narrow layers (fewer than kNarrow output channels, or input channels for dx): OpenBLAS is about
// twice as fast on the transposed products, so y[n]^T = col^T W^T, dW^T += col dy[n]^T and
// dx[n]^T = col(dy)^T Wf^T are computed instead and the small [H*W, C] result is transposed.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/ops_util.hpp"

namespace minidl::ops {

using detail::check;

namespace {
constexpr int64_t kNarrow = 32;

/// dst[c, i] (+)= src[i, c] for src [rows, cols] row-major -> dst [cols, rows].
void transpose_into(const float* src, int64_t rows, int64_t cols, float* dst, bool accumulate) {
  for (int64_t c = 0; c < cols; ++c) {
    float* d = dst + c * rows;
    if (accumulate) {
      for (int64_t i = 0; i < rows; ++i) d[i] += src[i * cols + c];
    } else {
      for (int64_t i = 0; i < rows; ++i) d[i] = src[i * cols + c];
    }
  }
}
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding) {
  check(x.dim() == 4, "conv2d", "input [N, C_in, H, W]", x);
  check(weight.dim() == 4 && weight.size(1) == x.size(1), "conv2d",
        "weight [C_out, " + std::to_string(x.size(1)) + ", KH, KW] for input " +
            shape_str(x.shape()),
        weight);
  if (bias.defined()) {
    check(bias.dim() == 1 && bias.size(0) == weight.size(0), "conv2d",
          "bias [" + std::to_string(weight.size(0)) + "]", bias);
  }
  if (stride < 1 || padding < 0) {
    throw std::invalid_argument("conv2d: stride must be >= 1 and padding >= 0, got stride " +
                                std::to_string(stride) + ", padding " + std::to_string(padding));
  }
  const int64_t N = x.size(0), CO = weight.size(0);
  kernels::ConvGeom g{x.size(1), x.size(2), x.size(3), weight.size(2), weight.size(3),
                      stride, padding, 0, 0};
  g.HO = (g.H + 2 * padding - g.KH) / stride + 1;
  g.WO = (g.W + 2 * padding - g.KW) / stride + 1;
  if (g.H + 2 * padding < g.KH || g.W + 2 * padding < g.KW) {
    throw std::invalid_argument("conv2d: kernel " + shape_str(weight.shape()) +
                                " larger than padded input " + shape_str(x.shape()));
  }
  const int64_t K = g.C * g.KH * g.KW, HWO = g.HO * g.WO, CHW = g.C * g.H * g.W;
  // A 1x1, stride-1, unpadded conv needs no im2col: col is the image itself.
  const bool direct = g.KH == 1 && g.KW == 1 && stride == 1 && padding == 0;
  const bool narrow = CO < kNarrow;

  Tensor y = Tensor::empty({N, CO, g.HO, g.WO});
  const float* xd = x.data();
  const float* wd = weight.data();
  float* yd = y.data();
#pragma omp parallel
  {
    Storage col(direct ? 0 : K * HWO);  // scratch, fully written by im2col
    Storage yt(narrow ? HWO * CO : 0);  // y[n]^T for narrow layers
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* c = xd + n * CHW;
      if (!direct) {
        kernels::im2col(c, g, col.data());
        c = col.data();
      }
      float* yn = yd + n * CO * HWO;
      if (narrow) {
        kernels::gemm(true, true, HWO, CO, K, 1.0f, c, wd, 0.0f, yt.data());  // col^T W^T
        transpose_into(yt.data(), HWO, CO, yn, false);
      } else {
        kernels::gemm(false, false, CO, HWO, K, 1.0f, wd, c, 0.0f, yn);
      }
      if (bias.defined()) {
        const float* b = bias.data();
        for (int64_t o = 0; o < CO; ++o)
          for (int64_t i = 0; i < HWO; ++i) yn[o * HWO + i] += b[o];
      }
    }
  }

  if (!needs_graph({&x, &weight, &bias})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias},
      [x, weight, bias, out, g, N, CO, K, HWO, CHW, direct, narrow]() mutable {
        const float* dy = out->grad.data();
        bool dx_fresh = false;  // dx allocated now, uninitialized: the first write assigns
        float* dx = detail::grad_for_write_or_null(x, &dx_fresh);
        float* dw = detail::grad_or_null(weight);
        float* db = detail::grad_or_null(bias);
        const float* xd = x.data();
        const float* wd = weight.data();
        const int nthreads = omp_get_max_threads();
        // The flipped kernel for the stride-1 input gradient (see the header comment).
        const bool flip_path = dx && !direct && g.stride == 1 && g.KH == g.KW &&
                               g.pad <= g.KH - 1;
        kernels::ConvGeom gt{CO, g.HO, g.WO, g.KH, g.KW, 1, g.KH - 1 - g.pad, g.H, g.W};
        Storage wflip(flip_path ? K * CO : 0);
        if (flip_path) {
          const int64_t KK = g.KH * g.KW;
          for (int64_t o = 0; o < CO; ++o)
            for (int64_t c = 0; c < g.C; ++c)
              for (int64_t k = 0; k < KK; ++k)
                wflip[(c * CO + o) * KK + (KK - 1 - k)] = wd[(o * g.C + c) * KK + k];
        }
        // Per-thread weight-gradient partials, summed in thread order: deterministic.
        std::vector<std::vector<float>> dw_part(dw ? nthreads : 0);
#pragma omp parallel
        {
          const int tid = omp_get_thread_num();
          Storage col((direct || !dw) ? 0 : K * HWO);
          Storage dcol((direct || !dx) ? 0 : (flip_path ? CO * g.KH * g.KW * g.H * g.W : K * HWO));
          const bool narrow_in = g.C < kNarrow;
          Storage dxt(flip_path && narrow_in ? g.H * g.W * g.C : 0);
          if (dw) dw_part[tid].assign(CO * K, 0.0f);  // [CO, K], or [K, CO] when narrow
#pragma omp for schedule(static)
          for (int64_t n = 0; n < N; ++n) {
            const float* dyn = dy + n * CO * HWO;
            if (dw) {
              const float* c = xd + n * CHW;
              if (!direct) {
                kernels::im2col(c, g, col.data());
                c = col.data();
              }
              if (narrow) {  // dW^T += col dy[n]^T
                kernels::gemm(false, true, K, CO, HWO, 1.0f, c, dyn, 1.0f, dw_part[tid].data());
              } else {
                kernels::gemm(false, true, CO, K, HWO, 1.0f, dyn, c, 1.0f, dw_part[tid].data());
              }
            }
            if (dx) {
              const float beta = dx_fresh ? 0.0f : 1.0f;
              if (direct) {
                kernels::gemm(true, false, K, HWO, CO, 1.0f, wd, dyn, beta, dx + n * CHW);
              } else if (flip_path) {
                kernels::im2col(dyn, gt, dcol.data());
                if (narrow_in) {  // dx[n]^T = col(dy)^T Wf^T, then transposed into dx
                  kernels::gemm(true, true, g.H * g.W, g.C, CO * g.KH * g.KW, 1.0f, dcol.data(),
                                wflip.data(), 0.0f, dxt.data());
                  transpose_into(dxt.data(), g.H * g.W, g.C, dx + n * CHW, !dx_fresh);
                } else {
                  kernels::gemm(false, false, g.C, g.H * g.W, CO * g.KH * g.KW, 1.0f,
                                wflip.data(), dcol.data(), beta, dx + n * CHW);
                }
              } else {
                if (dx_fresh) std::fill(dx + n * CHW, dx + (n + 1) * CHW, 0.0f);
                kernels::gemm(true, false, K, HWO, CO, 1.0f, wd, dyn, 0.0f, dcol.data());
                kernels::col2im_add(dcol.data(), g, dx + n * CHW);
              }
            }
          }
        }
        if (dw) {
          for (int t = 0; t < nthreads; ++t) {
            if (dw_part[t].empty()) continue;
            if (narrow) {
              transpose_into(dw_part[t].data(), K, CO, dw, true);
            } else {
              for (int64_t i = 0; i < CO * K; ++i) dw[i] += dw_part[t][i];
            }
          }
        }
        if (db) {
          for (int64_t o = 0; o < CO; ++o) {
            double s = 0.0;
            for (int64_t n = 0; n < N; ++n) {
              const float* p = dy + (n * CO + o) * HWO;
              for (int64_t i = 0; i < HWO; ++i) s += p[i];
            }
            db[o] += static_cast<float>(s);
          }
        }
      },
      "conv2d");
  return y;
}

}  // namespace minidl::ops
