// minidl — BLAS wrapper, im2col/col2im, thread pool control; GELU runs the active SIMD path's
// kernels (core/simd/gelu.cpp).
#include "core/kernels.hpp"

#include <cblas.h>
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/simd.hpp"

namespace minidl {

void set_num_threads(int n) {
  // Keep freed activation buffers in the heap instead of returning them to the kernel: each
  // training step reallocates the same sizes, and fresh pages cost page faults and zeroing.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (n < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
  // OpenBLAS first: its OpenMP build implements openblas_set_num_threads with
  // omp_set_num_threads. Called from inside minidl's parallel loops it runs single-threaded.
  openblas_set_num_threads(n);
  omp_set_num_threads(n);
}

std::string blas_config() {
  const std::string config = openblas_get_config(), core = openblas_get_corename();
  // A DYNAMIC_ARCH build names its core in the configuration already.
  return config.find(core) == std::string::npos ? config + ", core " + core : config;
}

int get_num_threads() { return omp_get_max_threads(); }

namespace kernels {

namespace {
// The longest inner dimension handed to the small GEMMs: their panels of B (K x 16 floats) then
// stay in L1 (18 KB at 288, resnet20's widest im2col), L2 at most.
constexpr int64_t kSmallGemmK = 1152;
}  // namespace

void fill(float* x, int64_t n, float value) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

bool small_gemm_takes(int64_t N, int64_t K) {
  return simd::active().gemm_nn != nullptr && N % 16 == 0 && K <= kSmallGemmK;
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          const float* B, float beta, float* C) {
  // One thread's small product inside a parallel region (the Winograd transform domain's, the
  // im2col convolutions' per image), even a region of one thread: the path's own kernel where
  // it has one (core/simd.hpp, Kernels::gemm_nn). Outside, OpenBLAS's threads run.
  if (!trans_a && !trans_b && alpha == 1.0f && beta == 0.0f && omp_get_level() > 0 &&
      small_gemm_takes(N, K))
    return simd::active().gemm_nn(M, N, K, A, B, C);
  const int lda = static_cast<int>(trans_a ? M : K);
  const int ldb = static_cast<int>(trans_b ? K : N);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, lda, B, ldb, beta, C, static_cast<int>(N));
}

// "Same" convolutions (stride 1, WO = W): the plane of tap (kh, kw) is the input plane shifted
// by kw - pad columns and kh - pad rows, i.e. one contiguous copy of the valid rows, then the
// |shift| columns that fell off the edge set to zero.
static void im2col_same(const float* x, const ConvGeom& g, float* col) {
  const int64_t W = g.W, HWO = g.HO * g.WO;
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * W;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      // Output rows whose input row oh - pad + kh lies inside [0, H): [oh_lo, oh_hi), both
      // clamped to [0, HO] (pad - kh can exceed HO when the input is shorter than the padding).
      const int64_t oh_lo = std::min(g.HO, std::max<int64_t>(0, g.pad - kh));
      const int64_t oh_hi = std::max(oh_lo, std::min(g.HO, g.H + g.pad - kh));
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        float* row = col + ((c * g.KH + kh) * g.KW + kw) * HWO;
        const int64_t shift = kw - g.pad;
        std::memset(row, 0, sizeof(float) * oh_lo * W);
        std::memset(row + oh_hi * W, 0, sizeof(float) * (g.HO - oh_hi) * W);
        const int64_t n = (oh_hi - oh_lo) * W;
        if (n <= 0) continue;
        float* dst = row + oh_lo * W;
        const float* src = xc + (oh_lo - g.pad + kh) * W + shift;  // dst[i] = src[i]
        // Copy only elements that lie inside this plane (src[i] for i in [a, b)).
        const int64_t a = std::max<int64_t>(0, -shift), b = n - std::max<int64_t>(0, shift);
        if (b > a) std::memcpy(dst + a, src + a, sizeof(float) * (b - a));
        // Zero the columns whose input column is outside [0, W).
        if (shift < 0) {
          for (int64_t r = 0; r < n; r += W)
            for (int64_t j = 0; j < -shift; ++j) dst[r + j] = 0.0f;
        } else if (shift > 0) {
          for (int64_t r = 0; r < n; r += W)
            for (int64_t j = W - shift; j < W; ++j) dst[r + j] = 0.0f;
        }
      }
    }
  }
}

// Stride 2: input column iw = 2 * ow - pad + kw = 2 * (ow + s) + q with parity q in {0, 1}, so
// after splitting each input row into its even and odd columns (the phase planes ph[q], rows of
// Wq = (W - q + 1) / 2 values), every row of col is a contiguous copy of a phase row, shifted
// by s, instead of a stride-2 gather.
static void im2col_stride2(const float* x, const ConvGeom& g, float* col) {
  const int64_t HWO = g.HO * g.WO, W0 = (g.W + 1) / 2, W1 = g.W / 2;
  std::vector<float> ph(g.H * (W0 + W1));
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * g.W;
    float* p0 = ph.data();
    float* p1 = ph.data() + g.H * W0;
    for (int64_t h = 0; h < g.H; ++h) {
      const float* r = xc + h * g.W;
      for (int64_t j = 0; j < W0; ++j) p0[h * W0 + j] = r[2 * j];
      for (int64_t j = 0; j < W1; ++j) p1[h * W1 + j] = r[2 * j + 1];
    }
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        float* row = col + ((c * g.KH + kh) * g.KW + kw) * HWO;
        const int64_t d = kw - g.pad;
        const int64_t q = ((d % 2) + 2) % 2, s = (d - q) / 2, Wq = q ? W1 : W0;
        const float* pq = q ? p1 : p0;
        // Output columns whose phase column ow + s lies inside [0, Wq).
        const int64_t lo = std::min(g.WO, std::max<int64_t>(0, -s));
        const int64_t hi = std::max(lo, std::min(g.WO, Wq - s));
        for (int64_t oh = 0; oh < g.HO; ++oh) {
          const int64_t ih = 2 * oh - g.pad + kh;
          float* out = row + oh * g.WO;
          if (ih < 0 || ih >= g.H) {
            for (int64_t ow = 0; ow < g.WO; ++ow) out[ow] = 0.0f;
            continue;
          }
          const float* src = pq + ih * Wq + s;
          for (int64_t ow = 0; ow < lo; ++ow) out[ow] = 0.0f;
          for (int64_t ow = lo; ow < hi; ++ow) out[ow] = src[ow];
          for (int64_t ow = hi; ow < g.WO; ++ow) out[ow] = 0.0f;
        }
      }
    }
  }
}

void im2col(const float* x, const ConvGeom& g, float* col) {
  if (g.stride == 1 && g.WO == g.W && g.HO == g.H && g.pad < g.W) return im2col_same(x, g, col);
  if (g.stride == 2 && g.KW > 1) return im2col_stride2(x, g, col);
  const int64_t HWO = g.HO * g.WO;
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * g.W;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        float* row = col + ((c * g.KH + kh) * g.KW + kw) * HWO;
        // Output columns whose input column iw = ow * stride - pad + kw lies inside [0, W).
        const int64_t shift = kw - g.pad;
        const int64_t lo = std::min(g.WO, std::max<int64_t>(0, (-shift + g.stride - 1) / g.stride));
        const int64_t hi = std::max(lo, std::min(g.WO, (g.W - shift + g.stride - 1) / g.stride));
        for (int64_t oh = 0; oh < g.HO; ++oh) {
          const int64_t ih = oh * g.stride - g.pad + kh;
          float* out = row + oh * g.WO;
          if (ih < 0 || ih >= g.H) {
            for (int64_t ow = 0; ow < g.WO; ++ow) out[ow] = 0.0f;
            continue;
          }
          const float* src = xc + ih * g.W + shift;  // src[ow * stride] = x[ih, iw]
          for (int64_t ow = 0; ow < lo; ++ow) out[ow] = 0.0f;
          if (g.stride == 1) {
            // Plain loops, not memcpy: rows are ~8-32 floats, where a call costs more than the
            // copy; the compiler vectorizes these.
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = src[ow * g.stride];
          }
          for (int64_t ow = hi; ow < g.WO; ++ow) out[ow] = 0.0f;
        }
      }
    }
  }
}

// Stride 2, the adjoint of im2col_stride2: accumulate each col row into its phase plane with
// contiguous adds, then add the two phase planes back into dx's even and odd columns.
static void col2im_add_stride2(const float* col, const ConvGeom& g, float* dx) {
  const int64_t HWO = g.HO * g.WO, W0 = (g.W + 1) / 2, W1 = g.W / 2;
  std::vector<float> ph(g.H * (W0 + W1));
  for (int64_t c = 0; c < g.C; ++c) {
    std::fill(ph.begin(), ph.end(), 0.0f);
    float* p0 = ph.data();
    float* p1 = ph.data() + g.H * W0;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const float* row = col + ((c * g.KH + kh) * g.KW + kw) * HWO;
        const int64_t d = kw - g.pad;
        const int64_t q = ((d % 2) + 2) % 2, s = (d - q) / 2, Wq = q ? W1 : W0;
        float* pq = q ? p1 : p0;
        const int64_t lo = std::min(g.WO, std::max<int64_t>(0, -s));
        const int64_t hi = std::max(lo, std::min(g.WO, Wq - s));
        for (int64_t oh = 0; oh < g.HO; ++oh) {
          const int64_t ih = 2 * oh - g.pad + kh;
          if (ih < 0 || ih >= g.H) continue;
          float* dst = pq + ih * Wq + s;
          const float* in = row + oh * g.WO;
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] += in[ow];
        }
      }
    }
    float* dxc = dx + c * g.H * g.W;
    for (int64_t h = 0; h < g.H; ++h) {
      float* r = dxc + h * g.W;
      for (int64_t j = 0; j < W0; ++j) r[2 * j] += p0[h * W0 + j];
      for (int64_t j = 0; j < W1; ++j) r[2 * j + 1] += p1[h * W1 + j];
    }
  }
}

void col2im_add(const float* col, const ConvGeom& g, float* dx) {
  if (g.stride == 2 && g.KW > 1) return col2im_add_stride2(col, g, dx);
  const int64_t HWO = g.HO * g.WO;
  for (int64_t c = 0; c < g.C; ++c) {
    float* dxc = dx + c * g.H * g.W;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const float* row = col + ((c * g.KH + kh) * g.KW + kw) * HWO;
        for (int64_t oh = 0; oh < g.HO; ++oh) {
          const int64_t ih = oh * g.stride - g.pad + kh;
          if (ih < 0 || ih >= g.H) continue;
          float* dxrow = dxc + ih * g.W;
          const float* in = row + oh * g.WO;
          if (g.stride == 1) {
            // iw = ow + shift: add the valid range with no per-element test.
            const int64_t shift = kw - g.pad;
            const int64_t lo = std::max<int64_t>(0, -shift);
            const int64_t hi = std::min<int64_t>(g.WO, g.W - shift);
            float* d = dxrow + shift;
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] += in[ow];
          } else {
            for (int64_t ow = 0; ow < g.WO; ++ow) {
              const int64_t iw = ow * g.stride - g.pad + kw;
              if (iw >= 0 && iw < g.W) dxrow[iw] += in[ow];
            }
          }
        }
      }
    }
  }
}

void gelu(float* y, const float* x, int64_t n) { simd::active().gelu(y, x, n); }

void gelu_backward_add(float* dx, const float* dy, const float* x, int64_t n) {
  simd::active().gelu_backward_add(dx, dy, x, n);
}

void gelu_reference(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<float>(0.5 * v * std::erfc(-v * M_SQRT1_2));
  }
}

void gelu_backward_add_reference(float* dx, const float* dy, const float* x, int64_t n) {
  const double inv_sqrt_2pi = 0.5 * M_2_SQRTPI * M_SQRT1_2;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double cdf = 0.5 * std::erfc(-v * M_SQRT1_2);
    const double pdf = inv_sqrt_2pi * std::exp(-0.5 * v * v);
    dx[i] += static_cast<float>(dy[i] * (cdf + v * pdf));
  }
}

}  // namespace kernels
}  // namespace minidl
