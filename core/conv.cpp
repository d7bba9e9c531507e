// minidl — conv2d: forward and backward as sibling functions, and the op that ties them to
// autograd.
//
// Shapes in the letters of core/ops.hpp's legend: x [N, C, H, W], w [O, C, KH, KW], b [O],
// y [N, O, HO, WO]; R = C * KH * KW rows of im2col's matrix.
// Two algorithms, chosen per geometry by conv2d_uses_winograd():
// - Winograd F(4x4, 3x3) (core/winograd.hpp) for 3x3 stride-1 convolutions (padding 0-2) with at
//   least 8 input channels, the bulk of a ResNet: forward, input gradient (a convolution of dy
//   with the flipped filters) and weight gradient. The transformed weight is cached on the
//   weight tensor and recomputed only when the weight's version changes (an optimizer step,
//   load_state_dict), so frozen convolutions (BN-only training, eval mode) transform their
//   filters once. A build with the CMake option MINIDL_WINOGRAD=OFF never takes this path.
// - im2col + GEMM for every other geometry, one image per OpenMP iteration. Per image n, with
//   col = im2col(x[n]) of shape [R, HO*WO]:
//     forward:  y[n] = W col                       W viewed as [O, R]
//     backward: dW  += dy[n] col^T                 (skipped when W is frozen)
//               dx[n] = col2im(W^T dy[n])          (skipped when x needs no gradient)
//   For stride 1 and a square kernel, dx is itself a convolution: dx[n] = Wf * dy[n] with
//   Wf[c, o, kh, kw] = W[o, c, KH-1-kh, KW-1-kw] and padding KH-1-padding, so it is computed as
//   im2col(dy[n]) and one GEMM — a gather instead of col2im's scatter. Narrow layers (fewer
//   than kNarrow output channels, or input channels for dx): OpenBLAS is about twice as fast on
//   the transposed products, so y[n]^T = col^T W^T, dW^T += col dy[n]^T and
//   dx[n]^T = col(dy)^T Wf^T are computed instead and the small [S, C] result is transposed.
//   Where the SIMD path has its own small GEMM (AVX2), the weight gradient is always
//   dW^T += col dy[n]^T, a plain product of dy[n] transposed per image (no OpenBLAS packing).
// - conv2d_with_projection: a K x K convolution (odd K, padding K / 2, stride > 1) and a 1 x 1
//   convolution of the same input and stride (a ResNet block's first convolution and its
//   projection shortcut). The 1 x 1 one reads the pixels of the K x K one's center tap, so its
//   column matrix is the rows c * K * K + center of the other's: both come from one im2col per
//   image, and backward adds W_p^T dyp[n] into those rows of dcol before the one col2im. The
//   separate pass over x (and over dx) of the 1 x 1 convolution is saved: its im2col and
//   col2im were memory-bound (the 8 MB input of resnet20's stage 2 read from beyond L2).
// The bias is added after either algorithm: y += b, db += sum over N, HO, WO of dy.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"
#include "core/simd.hpp"
#include "core/winograd.hpp"

namespace minidl::ops {

using detail::check;
using detail::GradOut;
using kernels::ConvGeom;

namespace {
constexpr int64_t kNarrow = 32;
#ifdef MINIDL_NO_WINOGRAD  // CMake option MINIDL_WINOGRAD=OFF: im2col + GEMM everywhere
constexpr int64_t kWinogradMinChannels = INT64_MAX;
#else
constexpr int64_t kWinogradMinChannels = 8;
#endif

/// dst[c, i] (+)= src[i, c] for src [rows, cols] row-major -> dst [cols, rows]: the SIMD path's
/// 8 x 8 register blocks (core/simd.hpp, Kernels::transpose), or element by element where there
/// is none (the fuzz build).
void transpose_into(const float* src, int64_t rows, int64_t cols, float* dst, bool accumulate) {
  if (const auto transpose = simd::active().transpose)
    return transpose(src, rows, cols, dst, accumulate);
  for (int64_t c = 0; c < cols; ++c) {
    float* d = dst + c * rows;
    if (accumulate) {
      for (int64_t i = 0; i < rows; ++i) d[i] += src[i * cols + c];
    } else {
      for (int64_t i = 0; i < rows; ++i) d[i] = src[i * cols + c];
    }
  }
}

/// Wf [C, O, KH, KW] with Wf[c, o, kh, kw] = w[o, c, KH-1-kh, KW-1-kw] (the input gradient's
/// filters); w [O, C, KH, KW], KHW = KH * KW.
Storage flip_weight(const float* w, int64_t O, int64_t C, int64_t KHW) {
  Storage wf(O * C * KHW);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < KHW; ++k)
        wf[(c * O + o) * KHW + (KHW - 1 - k)] = w[(o * C + c) * KHW + k];
  return wf;
}

/// The Winograd transform of `w` ([O, C, 3, 3]), or of its flipped filters, cached on the
/// tensor and valid while its version is unchanged.
const float* winograd_weight(const Tensor& w, bool flipped) {
  TensorImpl* t = w.impl();
  const int key = flipped ? 1 : 0;
  auto it = std::find_if(t->derived.begin(), t->derived.end(),
                         [key](const DerivedCache& d) { return d.key == key; });
  if (it == t->derived.end()) {
    t->derived.push_back(DerivedCache{key, 0, Storage()});
    it = t->derived.end() - 1;
  } else if (it->version == t->version && !it->data.empty()) {
    return it->data.data();
  }
  const int64_t O = w.size(0), C = w.size(1);
  it->data.resize(kernels::winograd_weight_size(O, C));
  kernels::winograd_weight_transform(it->data.data(), w.data(), O, C, flipped);
  it->version = t->version;
  return it->data.data();
}

// ---- im2col + GEMM -------------------------------------------------------------------------

/// A 1 x 1 convolution computed beside a KH x KW one on the same input, from the same column
/// matrix (conv2d_with_projection): both have the same stride, and the KH x KW one (odd sizes,
/// padding (KH - 1) / 2) samples at its center tap the pixels the 1 x 1 one reads, so the 1 x 1's
/// own column matrix is the rows c * KH * KW + center of the other's. O == 0: none.
struct Projection {
  const float* w = nullptr;  // [OP, C]
  int64_t O = 0;             // its output channels, OP
};

/// The row of im2col's matrix [R, HWO] that holds channel 0's center tap (channel c's is
/// center_row + c * KH * KW).
int64_t center_row(const ConvGeom& g) { return (g.KH / 2) * g.KW + g.KW / 2; }

/// dst [C, HWO] = the center tap's rows of col [R, HWO] (the projection's column matrix).
void gather_center_rows(const float* col, const ConvGeom& g, int64_t HWO, float* dst) {
  const int64_t KHW = g.KH * g.KW, ctr = center_row(g);
  for (int64_t c = 0; c < g.C; ++c) std::copy_n(col + (c * KHW + ctr) * HWO, HWO, dst + c * HWO);
}

/// Whether forward_gemm computes y[n] = w col through its transpose: a narrow layer (O < kNarrow)
/// whose shape the SIMD path's own small GEMM does not take (OpenBLAS is about twice as fast on
/// the transposed product there).
bool forward_transposed(int64_t O, int64_t R, int64_t HWO) {
  return O < kNarrow && !kernels::small_gemm_takes(HWO, R);
}

/// yn [O, HWO] = w [O, R] col [R, HWO], one image's product; where forward_transposed, as
/// yn^T = col^T w^T into yt [HWO, O] (scratch), then transposed into yn.
void forward_gemm(const float* w, const float* col, float* yn, int64_t O, int64_t R, int64_t HWO,
                  float* yt) {
  if (forward_transposed(O, R, HWO)) {
    kernels::gemm(true, true, HWO, O, R, 1.0f, col, w, 0.0f, yt);  // col^T W^T
    transpose_into(yt, HWO, O, yn, false);
  } else {
    kernels::gemm(false, false, O, HWO, R, 1.0f, w, col, 0.0f, yn);
  }
}

/// y [N, O, HO, WO] = conv(x [N, C, H, W], w [O, C, KH, KW]), no bias; with a projection
/// (p.O > 0), also yp [N, OP, HO, WO] = conv(x, p.w) from the same column matrices.
void conv2d_im2col_forward(float* y, const float* x, const float* w, int64_t N, const ConvGeom& g,
                           int64_t O, Projection p = {}, float* yp = nullptr) {
  const int64_t R = g.C * g.KH * g.KW, HWO = g.HO * g.WO, CHW = g.C * g.H * g.W;
  // A 1x1, stride-1, unpadded conv needs no im2col: col is the image itself.
  const bool direct = g.KH == 1 && g.KW == 1 && g.stride == 1 && g.pad == 0;
#pragma omp parallel
  {
    Storage col(direct ? 0 : R * HWO);  // scratch, fully written by im2col
    // y[n]^T for narrow layers (forward_gemm)
    Storage yt(HWO * std::max(forward_transposed(O, R, HWO) ? O : 0,
                              p.O > 0 && forward_transposed(p.O, g.C, HWO) ? p.O : 0));
    Storage colp(p.O > 0 ? g.C * HWO : 0);  // the projection's column matrix
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* c = x + n * CHW;
      if (!direct) {
        kernels::im2col(c, g, col.data());
        c = col.data();
      }
      forward_gemm(w, c, y + n * O * HWO, O, R, HWO, yt.data());
      if (p.O > 0) {
        gather_center_rows(c, g, HWO, colp.data());
        forward_gemm(p.w, colp.data(), yp + n * p.O * HWO, p.O, g.C, HWO, yt.data());
      }
    }
  }
}

/// Where one image's weight gradient dW [O, R] += dy[n] [O, HWO] col^T goes: OpenBLAS's NT
/// product dW += dy[n] col^T, or its transpose dW^T += col dy[n]^T into a [R, O] partial (then
/// transposed once): for narrow layers (O < kNarrow, OpenBLAS is about twice as fast on it), and
/// wherever the SIMD path's own small GEMM takes the plain product C += A B (AVX2): there dy[n] is
/// transposed per image (O * HWO floats, 8 x 8 register blocks) instead, because OpenBLAS's
/// Haswell kernels pack both operands of every per-image NT product, which took longer than the
/// product itself.
struct WeightGrad {
  int64_t O, R, HWO;
  bool nn, transposed;  // gemm_nn on dy[n]^T; the partial is [R, O] (else [O, R])
  WeightGrad(int64_t O_, int64_t R_, int64_t HWO_)
      : O(O_),
        R(R_),
        HWO(HWO_),
        nn(kernels::small_gemm_takes(O_, HWO_)),
        transposed(O_ < kNarrow || nn) {}
  /// part (+)= one image's dW from col [R, HWO] and dyn [O, HWO]; dyt: [HWO, O] scratch.
  void accumulate(float* part, const float* col, const float* dyn, float* dyt) const {
    if (nn) {  // dW^T += col dy[n]^T, as C += A B
      transpose_into(dyn, O, HWO, dyt, false);
      kernels::gemm(false, false, R, O, HWO, 1.0f, col, dyt, 1.0f, part);
    } else if (transposed) {  // dW^T += col dy[n]^T
      kernels::gemm(false, true, R, O, HWO, 1.0f, col, dyn, 1.0f, part);
    } else {
      kernels::gemm(false, true, O, R, HWO, 1.0f, dyn, col, 1.0f, part);
    }
  }
  /// dw [O, R] += the threads' partials, in thread order (deterministic).
  void reduce(const std::vector<std::vector<float>>& parts, float* dw) const {
    for (const auto& part : parts) {
      if (part.empty()) continue;
      if (transposed) {
        transpose_into(part.data(), R, O, dw, true);
      } else {
        for (int64_t i = 0; i < O * R; ++i) dw[i] += part[i];
      }
    }
  }
};

/// The gradients of y = conv(x, w): dx [N, C, H, W] (= when dx.fresh, else +=) and
/// dw [O, C, KH, KW] (+=) from dy [N, O, HO, WO]; either output may be null (not needed).
/// With a projection (p.O > 0, the col2im path only: stride > 1), also those of
/// yp = conv(x, p.w) from dyp [N, OP, HO, WO] (null: yp took no gradient): dwp [OP, C] (+=, may
/// be null) and its share of dx, added to the center tap's rows of dx's column matrix before
/// the one col2im.
void conv2d_im2col_backward(GradOut dx, float* dw, const float* dy, const float* x, const float* w,
                            int64_t N, const ConvGeom& g, int64_t O, Projection p = {},
                            const float* dyp = nullptr, float* dwp = nullptr) {
  const int64_t R = g.C * g.KH * g.KW, HWO = g.HO * g.WO, CHW = g.C * g.H * g.W;
  const bool direct = g.KH == 1 && g.KW == 1 && g.stride == 1 && g.pad == 0;
  const int nthreads = omp_get_max_threads();
  if (!dyp) p.O = 0;  // the projection took no gradient: nothing of it to do
  if (p.O == 0) dwp = nullptr;
  // The flipped kernel for the stride-1 input gradient (see the header comment).
  const bool flip_path = dx.data && !direct && g.stride == 1 && g.KH == g.KW && g.pad <= g.KH - 1;
  const ConvGeom gt{O, g.HO, g.WO, g.KH, g.KW, 1, g.KH - 1 - g.pad, g.H, g.W};
  const Storage wflip = flip_path ? flip_weight(w, O, g.C, g.KH * g.KW) : Storage();
  // W^T [R, O] (and the projection's [C, OP]) for the col2im path's dcol = W^T dy, so that its
  // GEMM is a plain C = A B, which the SIMD path's own small kernel takes (kernels::gemm;
  // OpenBLAS elsewhere).
  const bool col2im_path = dx.data && !direct && !flip_path;
  Storage wt(col2im_path ? R * O : 0), wpt(col2im_path ? g.C * p.O : 0);
  if (col2im_path) {
    transpose_into(w, O, R, wt.data(), false);
    if (p.O > 0) transpose_into(p.w, p.O, g.C, wpt.data(), false);
  }
  const WeightGrad wg(O, R, HWO), wgp(p.O, g.C, HWO);
  // Per-thread weight-gradient partials, summed in thread order: deterministic.
  std::vector<std::vector<float>> dw_part(dw ? nthreads : 0), dwp_part(dwp ? nthreads : 0);
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    Storage col((direct || !(dw || dwp)) ? 0 : R * HWO);
    Storage colp(dwp ? g.C * HWO : 0);
    Storage dyt((wg.nn && dw) || (wgp.nn && dwp) ? HWO * std::max(O, p.O) : 0);
    Storage dcol((direct || !dx.data) ? 0 : (flip_path ? O * g.KH * g.KW * g.H * g.W : R * HWO));
    Storage dcolp(dx.data && p.O > 0 ? g.C * HWO : 0);
    const bool narrow_in = g.C < kNarrow;
    Storage dxt(flip_path && narrow_in ? g.H * g.W * g.C : 0);
    if (dw) dw_part[tid].assign(O * R, 0.0f);
    if (dwp) dwp_part[tid].assign(p.O * g.C, 0.0f);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* dyn = dy + n * O * HWO;
      const float* dypn = p.O > 0 ? dyp + n * p.O * HWO : nullptr;
      if (dw || dwp) {
        const float* c = x + n * CHW;
        if (!direct) {
          kernels::im2col(c, g, col.data());
          c = col.data();
        }
        if (dw) wg.accumulate(dw_part[tid].data(), c, dyn, dyt.data());
        if (dwp) {
          gather_center_rows(c, g, HWO, colp.data());
          wgp.accumulate(dwp_part[tid].data(), colp.data(), dypn, dyt.data());
        }
      }
      if (dx.data) {
        const float beta = dx.fresh ? 0.0f : 1.0f;
        float* dxn = dx.data + n * CHW;
        if (direct) {
          kernels::gemm(true, false, R, HWO, O, 1.0f, w, dyn, beta, dxn);
        } else if (flip_path) {
          kernels::im2col(dyn, gt, dcol.data());
          if (narrow_in) {  // dx[n]^T = col(dy)^T Wf^T, then transposed into dx
            kernels::gemm(true, true, g.H * g.W, g.C, O * g.KH * g.KW, 1.0f, dcol.data(),
                          wflip.data(), 0.0f, dxt.data());
            transpose_into(dxt.data(), g.H * g.W, g.C, dxn, !dx.fresh);
          } else {
            kernels::gemm(false, false, g.C, g.H * g.W, O * g.KH * g.KW, 1.0f, wflip.data(),
                          dcol.data(), beta, dxn);
          }
        } else {
          kernels::gemm(false, false, R, HWO, O, 1.0f, wt.data(), dyn, 0.0f, dcol.data());
          if (p.O > 0) {  // the projection's dcol (W_p^T dyp[n]) into the center tap's rows
            kernels::gemm(false, false, g.C, HWO, p.O, 1.0f, wpt.data(), dypn, 0.0f, dcolp.data());
            const int64_t KHW = g.KH * g.KW, ctr = center_row(g);
            for (int64_t c = 0; c < g.C; ++c) {
              float* d = dcol.data() + (c * KHW + ctr) * HWO;
              const float* s = dcolp.data() + c * HWO;
              for (int64_t i = 0; i < HWO; ++i) d[i] += s[i];
            }
          }
          kernels::col2im(dcol.data(), g, dxn, !dx.fresh);
        }
      }
    }
  }
  if (dw) wg.reduce(dw_part, dw);
  if (dwp) wgp.reduce(dwp_part, dwp);
}

// ---- bias ---------------------------------------------------------------------------------

/// y [N, O, S] += b [O].
void bias_forward(float* y, const float* b, int64_t N, int64_t O, int64_t S) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o) {
      float* p = y + (n * O + o) * S;
      for (int64_t i = 0; i < S; ++i) p[i] += b[o];
    }
}

/// db [O] += sum over N and S of dy [N, O, S] (double accumulation).
void bias_backward(float* db, const float* dy, int64_t N, int64_t O, int64_t S) {
  for (int64_t o = 0; o < O; ++o) {
    double s = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const float* p = dy + (n * O + o) * S;
      for (int64_t i = 0; i < S; ++i) s += p[i];
    }
    db[o] += static_cast<float>(s);
  }
}

/// y [N, O, HO, WO] = conv(x [N, C, H, W], w [O, C, KH, KW]) + b [O] (b may be null), by
/// Winograd when `winograd` (w_wino: w's transform, winograd_weight(w, false)), else by
/// im2col + GEMM (w_wino unused, may be null).
void conv2d_forward(float* y, const float* x, const float* w, const float* w_wino, const float* b,
                    int64_t N, const ConvGeom& g, int64_t O, bool winograd) {
  if (winograd) {
    kernels::winograd_forward(y, x, w_wino, N, g, O, /*accumulate=*/false);
  } else {
    conv2d_im2col_forward(y, x, w, N, g, O);
  }
  if (b) bias_forward(y, b, N, O, g.HO * g.WO);
}

/// The gradients of y = conv(x, w) + b from dy [N, O, HO, WO]: dx [N, C, H, W] (= when dx.fresh,
/// else +=), dw [O, C, KH, KW] (+=), db [O] (+=); each may be null (not needed). By Winograd when
/// `winograd` (wf_wino: the flipped filters' transform, winograd_weight(w, true), read only for
/// dx), else by im2col + GEMM (wf_wino unused, may be null).
void conv2d_backward(GradOut dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, const float* wf_wino, int64_t N, const ConvGeom& g, int64_t O,
                     bool winograd) {
  if (winograd) {
    if (dx.data) {  // dx = conv(dy, flipped w) with padding 2 - pad: a forward Winograd pass
      const ConvGeom gt{O, g.HO, g.WO, 3, 3, 1, 2 - g.pad, g.H, g.W};
      kernels::winograd_forward(dx.data, dy, wf_wino, N, gt, g.C, /*accumulate=*/!dx.fresh);
    }
    if (dw) kernels::winograd_backward_weight(dw, dy, x, N, g, O);
  } else {
    conv2d_im2col_backward(dx, dw, dy, x, w, N, g, O);
  }
  if (db) bias_backward(db, dy, N, O, g.HO * g.WO);
}

/// The geometries Winograd computes (kernels::winograd_applies: 3x3, stride 1, padding 0-2), less
/// those with fewer than 8 input channels (an RGB stem), where the transforms cost as much as
/// they save: measured equal for resnet20's 3 -> 16 stem, so im2col keeps those.
bool use_winograd(const ConvGeom& g) {
  return kernels::winograd_applies(g) && g.C >= kWinogradMinChannels;
}

}  // namespace

bool conv2d_uses_winograd(int64_t in_channels, int64_t kernel_size, int64_t stride,
                          int64_t padding) {
  return use_winograd(ConvGeom{in_channels, 1, 1, kernel_size, kernel_size, stride, padding, 1, 1});
}

namespace {

/// The geometry of conv(x, weight) with bias (may be undefined), after checking the shapes and
/// arguments (std::invalid_argument naming `op`).
ConvGeom conv_geometry(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       int64_t stride, int64_t padding) {
  const std::string name = op;
  check(x.dim() == 4, op, "input [N, C_in, H, W]", x);
  check(
      weight.dim() == 4 && weight.size(1) == x.size(1), op,
      "weight [C_out, " + std::to_string(x.size(1)) + ", KH, KW] for input " + shape_str(x.shape()),
      weight);
  if (bias.defined()) {
    check(bias.dim() == 1 && bias.size(0) == weight.size(0), op,
          "bias [" + std::to_string(weight.size(0)) + "]", bias);
  }
  if (stride < 1 || padding < 0) {
    throw std::invalid_argument(name + ": stride must be >= 1 and padding >= 0, got stride " +
                                std::to_string(stride) + ", padding " + std::to_string(padding));
  }
  ConvGeom g{x.size(1), x.size(2), x.size(3), weight.size(2), weight.size(3), stride,
             padding,   0,         0};
  if (g.H + 2 * padding < g.KH || g.W + 2 * padding < g.KW) {
    throw std::invalid_argument(name + ": kernel " + shape_str(weight.shape()) +
                                " larger than padded input " + shape_str(x.shape()));
  }
  g.HO = (g.H + 2 * padding - g.KH) / stride + 1;
  g.WO = (g.W + 2 * padding - g.KW) / stride + 1;
  return g;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding) {
  const ConvGeom g = conv_geometry("conv2d", x, weight, bias, stride, padding);
  const int64_t N = x.size(0), O = weight.size(0);
  // The profiler's rows name the algorithm; FLOPs are the direct convolution's (2 per
  // multiply-add), which every pass (forward, dx, dw) does, whatever the algorithm. Its
  // algorithm FLOPs are Winograd's own (GEMMs and transforms; im2col + GEMM does the direct
  // count), its bytes x, w and y once each per pass (dx: dy, w, dx; dw: dy, x, dw).
  const bool winograd = use_winograd(g);
  const char* name = winograd ? "conv2d (winograd)" : "conv2d (im2col)";
  profiler::Scope prof(name);
  const double flops = 2.0 * N * O * g.HO * g.WO * g.C * g.KH * g.KW;
  profiler::add_flops(flops);
  const double x_bytes = 4.0 * N * g.C * g.H * g.W, y_bytes = 4.0 * N * O * g.HO * g.WO,
               w_bytes = 4.0 * O * g.C * g.KH * g.KW;
  if (profiler::enabled()) {
    profiler::add_bytes(x_bytes + w_bytes + y_bytes);
    if (winograd) profiler::add_algorithm_flops(kernels::winograd_forward_flops(N, g, O));
  }

  Tensor y = Tensor::empty({N, O, g.HO, g.WO});
  conv2d_forward(y.mutable_data(), x.data(), weight.data(),
                 winograd ? winograd_weight(weight, false) : nullptr,
                 bias.defined() ? bias.data() : nullptr, N, g, O, winograd);
  if (!needs_graph({&x, &weight, &bias})) return y;

  // The closure only fetches the buffers and calls conv2d_backward (llm.c's op template).
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias},
      [x, weight, bias, out, g, N, O, winograd, flops, x_bytes, y_bytes, w_bytes]() {
        const GradOut dx = detail::grad_for_write_or_null(x);  // fresh: allocated, uninitialized
        float* dw = detail::grad_or_null(weight);
        float* db = detail::grad_or_null(bias);
        profiler::add_flops((dx.data ? flops : 0.0) + (dw ? flops : 0.0));
        if (profiler::enabled()) {
          profiler::add_bytes((dx.data ? y_bytes + w_bytes + x_bytes : 0.0) +
                              (dw ? y_bytes + x_bytes + w_bytes : 0.0));
          if (winograd) {
            const ConvGeom gt{O, g.HO, g.WO, 3, 3, 1, 2 - g.pad, g.H, g.W};  // dx's geometry
            profiler::add_algorithm_flops(
                (dx.data ? kernels::winograd_forward_flops(N, gt, g.C) : 0.0) +
                (dw ? kernels::winograd_backward_weight_flops(N, g, O) : 0.0));
          }
        }
        conv2d_backward(dx, dw, db, out->grad.data(), x.data(), weight.data(),
                        winograd && dx.data ? winograd_weight(weight, true) : nullptr, N, g, O,
                        winograd);
      },
      name);
  return y;
}

bool conv2d_projection_fuses(int64_t in_channels, int64_t kernel_size, int64_t stride,
                             int64_t padding) {
  return kernel_size % 2 == 1 && kernel_size > 1 && padding == kernel_size / 2 && stride > 1 &&
         !conv2d_uses_winograd(in_channels, kernel_size, stride, padding);
}

std::pair<Tensor, Tensor> conv2d_with_projection(const Tensor& x, const Tensor& weight,
                                                 const Tensor& projection, int64_t stride,
                                                 int64_t padding) {
  const ConvGeom g = conv_geometry("conv2d_with_projection", x, weight, Tensor(), stride, padding);
  check(projection.dim() == 4 && projection.size(1) == x.size(1) && projection.size(2) == 1 &&
            projection.size(3) == 1,
        "conv2d_with_projection", "projection [C_out, " + std::to_string(x.size(1)) + ", 1, 1]",
        projection);
  if (g.KH != g.KW || !conv2d_projection_fuses(g.C, g.KH, stride, padding)) {
    return {conv2d(x, weight, Tensor(), stride, padding),
            conv2d(x, projection, Tensor(), stride, 0)};
  }
  const int64_t N = x.size(0), O = weight.size(0), OP = projection.size(0);
  const char* name = "conv2d (im2col)";
  profiler::Scope prof(name);
  // The profiler counts both convolutions' FLOPs, as two conv2d calls would, and x's bytes once.
  const double HWO = static_cast<double>(g.HO * g.WO);
  const double flops = 2.0 * N * HWO * g.C * O * g.KH * g.KW, flops_p = 2.0 * N * HWO * g.C * OP;
  const double x_bytes = 4.0 * N * g.C * g.H * g.W, y_bytes = 4.0 * N * O * HWO,
               yp_bytes = 4.0 * N * OP * HWO, w_bytes = 4.0 * g.C * O * g.KH * g.KW,
               wp_bytes = 4.0 * g.C * OP;
  profiler::add_flops(flops + flops_p);
  profiler::add_bytes(x_bytes + w_bytes + wp_bytes + y_bytes + yp_bytes);

  Tensor y = Tensor::empty({N, O, g.HO, g.WO}), yp = Tensor::empty({N, OP, g.HO, g.WO});
  conv2d_im2col_forward(y.mutable_data(), x.data(), weight.data(), N, g, O,
                        Projection{projection.data(), OP}, yp.mutable_data());
  if (!needs_graph({&x, &weight, &projection})) return {y, yp};

  // Two outputs, one backward. yp's node runs first (it lists y as its input, so y comes after
  // it in the walk's order) and only hands yp's finished gradient over; y's node then computes
  // every gradient at once, with one im2col and one col2im per image; it runs even when y took
  // no gradient (Node::runs_without_grad), for yp's.
  auto dyp = std::make_shared<Storage>();
  TensorImpl* out = y.impl();
  TensorImpl* outp = yp.impl();
  attach_node(
      y, {x, weight, projection},
      [x, weight, projection, out, dyp, g, N, O, OP, flops, flops_p, x_bytes, y_bytes, yp_bytes,
       w_bytes, wp_bytes]() {
        const bool y_grad = !out->grad.empty(), yp_grad = !dyp->empty();
        if (!y_grad) {  // only yp took a gradient (the node runs anyway): dy = 0, no dw
          if (!yp_grad) return;
          out->grad.assign(out->storage->size(), 0.0f);
        }
        const GradOut dx = detail::grad_for_write_or_null(x);
        float* dw = y_grad ? detail::grad_or_null(weight) : nullptr;
        float* dwp = yp_grad ? detail::grad_or_null(projection) : nullptr;
        // Per pass as conv2d counts it: dx reads dy, w and writes dx; dw reads dy, x, writes dw.
        const double dy_bytes = y_bytes + (yp_grad ? yp_bytes : 0.0);
        profiler::add_flops((dx.data ? flops + (yp_grad ? flops_p : 0.0) : 0.0) +
                            (dw ? flops : 0.0) + (dwp ? flops_p : 0.0));
        profiler::add_bytes(
            (dx.data ? dy_bytes + w_bytes + (yp_grad ? wp_bytes : 0.0) + x_bytes : 0.0) +
            (dw || dwp ? dy_bytes + x_bytes + (dw ? w_bytes : 0.0) + (dwp ? wp_bytes : 0.0) : 0.0));
        conv2d_im2col_backward(dx, dw, out->grad.data(), x.data(), weight.data(), N, g, O,
                               Projection{projection.data(), OP}, yp_grad ? dyp->data() : nullptr,
                               dwp);
        Storage().swap(*dyp);
      },
      name);
  attach_node(
      yp, {y}, [outp, dyp]() { dyp->swap(outp->grad); },  // released by y's node
      "conv2d (im2col) projection");
  out->node->runs_without_grad = true;
  return {y, yp};
}

}  // namespace minidl::ops
