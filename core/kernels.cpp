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
  // One thread's small product C = A B or C += A B inside a parallel region (the Winograd transform
  // domain's, the im2col convolutions' per image), even a region of one thread: the path's own
  // kernel where it has one (core/simd.hpp, Kernels::gemm_nn). Outside, OpenBLAS's threads run.
  if (!trans_a && !trans_b && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) &&
      omp_get_level() > 0 && small_gemm_takes(N, K))
    return simd::active().gemm_nn(M, N, K, A, B, C, beta == 1.0f);
  const int lda = static_cast<int>(trans_a ? M : K);
  const int ldb = static_cast<int>(trans_b ? K : N);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, lda, B, ldb, beta, C, static_cast<int>(N));
}

// The portable build (MINIDL_NATIVE=OFF) compiles this file for baseline x86-64 (SSE2); the
// copies and adds of im2col and col2im, whose loops are long and contiguous, are compiled a
// second time for AVX2 (GCC's target_clones: the loader picks the AVX2 clone on CPUs that have
// it). A native build compiles them once, for its own CPU.
#if defined(MINIDL_SIMD_PORTABLE) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MINIDL_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define MINIDL_AVX2_CLONE
#endif

// "Same" convolutions (stride 1, WO = W): the plane of tap (kh, kw) is the input plane shifted
// by kw - pad columns and kh - pad rows, i.e. one contiguous copy of the valid rows, then the
// |shift| columns that fell off the edge set to zero.
MINIDL_AVX2_CLONE static void im2col_same(const float* x, const ConvGeom& g, float* col) {
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
MINIDL_AVX2_CLONE static void im2col_stride2(const float* x, const ConvGeom& g, float* col) {
  const int64_t HWO = g.HO * g.WO, W0 = (g.W + 1) / 2, W1 = g.W / 2;
  std::vector<float> ph(g.H * (W0 + W1));
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * g.W;
    float* p0 = ph.data();
    float* p1 = ph.data() + g.H * W0;
    for (int64_t h = 0; h < g.H; ++h) {
      const float* r = xc + h * g.W;
      float* q0 = p0 + h * W0;
      float* q1 = p1 + h * W1;
      // One loop over both phases (W1 <= W0 <= W1 + 1): an interleaved pair of loads that the
      // compiler vectorizes, where two stride-2 loops stay scalar.
      for (int64_t j = 0; j < W1; ++j) {
        q0[j] = r[2 * j];
        q1[j] = r[2 * j + 1];
      }
      if (W0 > W1) q0[W1] = r[2 * W1];
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

// ResNet's downsampling geometry: 3x3, stride 2, padding 1, even H and W (so HO = H / 2 and
// WO = W / 2). Input row ih = 2 * oh + dh and column iw = 2 * ow + dw with dh, dw = kh - 1,
// kw - 1 in {-1, 0, 1}: after splitting x[c] into its four parity planes
// P[a][b][i][j] = x[c, 2i + a, 2j + b] (each [HO, WO]), every row of col is one plane shifted
// by (sr, sc) = (floor(dh / 2), floor(dw / 2)), both 0 or -1: a single contiguous copy of HWO
// floats from offset -(sr * WO + sc), then zeros where the shift fell off the top row or the
// left column. No loop over output rows.
static bool is_s2k3p1_even(const ConvGeom& g) {
  return g.stride == 2 && g.KH == 3 && g.KW == 3 && g.pad == 1 && g.H % 2 == 0 && g.W % 2 == 0 &&
         g.HO == g.H / 2 && g.WO == g.W / 2;
}

// The plane (a, b) and the shift `start` = -(sr * WO + sc) of tap (kh, kw); sc_neg: sc == -1.
struct S2Tap {
  int64_t plane, start;
  bool sc_neg;
};
static S2Tap s2_tap(int64_t kh, int64_t kw, int64_t WO) {
  const int64_t dh = kh - 1, dw = kw - 1;
  const int64_t a = dh != 0, b = dw != 0, sr = dh < 0 ? -1 : 0, sc = dw < 0 ? -1 : 0;
  return {2 * a + b, -(sr * WO + sc), sc < 0};
}

MINIDL_AVX2_CLONE static void im2col_s2k3p1(const float* x, const ConvGeom& g, float* col) {
  const int64_t HO = g.HO, WO = g.WO, HWO = HO * WO;
  std::vector<float> planes(4 * HWO);  // P[a][b] at (2a + b) * HWO
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * g.W;
    for (int64_t h = 0; h < g.H; ++h) {
      const float* r = xc + h * g.W;
      float* q0 = planes.data() + (2 * (h & 1)) * HWO + (h >> 1) * WO;
      float* q1 = q0 + HWO;
      for (int64_t j = 0; j < WO; ++j) {  // one loop over both parities: vectorized
        q0[j] = r[2 * j];
        q1[j] = r[2 * j + 1];
      }
    }
    for (int64_t kh = 0; kh < 3; ++kh)
      for (int64_t kw = 0; kw < 3; ++kw) {
        float* row = col + ((c * 3 + kh) * 3 + kw) * HWO;
        const S2Tap t = s2_tap(kh, kw, WO);
        // start > HWO when HO == 1 and the tap reads the padding row: all zeros.
        const int64_t start = std::min(t.start, HWO);
        std::memset(row, 0, sizeof(float) * start);
        std::memcpy(row + start, planes.data() + t.plane * HWO, sizeof(float) * (HWO - start));
        if (t.sc_neg)
          for (int64_t k = 0; k < HWO; k += WO) row[k] = 0.0f;
      }
  }
}

// The adjoint of im2col_s2k3p1. Each plane first takes (=) the one tap that covers it whole
// (kh, kw in {1, 2}: no shift), so no plane is zeroed; the other taps' rows are added with one
// contiguous add, except the elements of the left padding column (sc == -1: col[oh * WO]),
// which that add would put on the last column of the plane's row above: those plane values are
// kept aside and put back (the tap adds nothing legitimate there). The four planes then go
// into dx's even and odd rows and columns (= or +=).
MINIDL_AVX2_CLONE static void col2im_s2k3p1(const float* col, const ConvGeom& g, float* dx,
                                            bool accumulate) {
  const int64_t HO = g.HO, WO = g.WO, HWO = HO * WO;
  std::vector<float> planes(4 * HWO), kept(HO);
  static constexpr int kTaps[9][2] = {{1, 1}, {1, 2}, {2, 1}, {2, 2},  // whole planes: =
                                      {0, 0}, {0, 1}, {0, 2}, {1, 0}, {2, 0}};
  for (int64_t c = 0; c < g.C; ++c) {
    for (int i = 0; i < 9; ++i) {
      const int64_t kh = kTaps[i][0], kw = kTaps[i][1];
      const float* row = col + ((c * 3 + kh) * 3 + kw) * HWO;
      const S2Tap t = s2_tap(kh, kw, WO);
      float* p = planes.data() + t.plane * HWO;  // p[k - start] (+)= row[k] for k >= start
      if (i < 4) {
        std::memcpy(p, row, sizeof(float) * HWO);  // start == 0
        continue;
      }
      // The plane elements that the left-column padding k = oh * WO (k >= start) would land on.
      const int64_t first = t.sc_neg ? (t.start + WO - 1) / WO : HO;
      for (int64_t oh = first; oh < HO; ++oh) kept[oh] = p[oh * WO - t.start];
      const int64_t n = HWO - t.start;
      const float* in = row + t.start;
      for (int64_t k = 0; k < n; ++k) p[k] += in[k];
      for (int64_t oh = first; oh < HO; ++oh) p[oh * WO - t.start] = kept[oh];
    }
    float* dxc = dx + c * g.H * g.W;
    for (int64_t h = 0; h < g.H; ++h) {
      float* r = dxc + h * g.W;
      const float* q0 = planes.data() + (2 * (h & 1)) * HWO + (h >> 1) * WO;
      const float* q1 = q0 + HWO;
      if (accumulate) {
        for (int64_t j = 0; j < WO; ++j) {
          r[2 * j] += q0[j];
          r[2 * j + 1] += q1[j];
        }
      } else {
        for (int64_t j = 0; j < WO; ++j) {
          r[2 * j] = q0[j];
          r[2 * j + 1] = q1[j];
        }
      }
    }
  }
}

MINIDL_AVX2_CLONE void im2col(const float* x, const ConvGeom& g, float* col) {
  if (g.stride == 1 && g.WO == g.W && g.HO == g.H && g.pad < g.W) return im2col_same(x, g, col);
  if (is_s2k3p1_even(g)) return im2col_s2k3p1(x, g, col);
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
          } else if (g.stride == 2) {  // a constant stride: vectorized (1x1 shortcuts)
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = src[2 * ow];
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
MINIDL_AVX2_CLONE static void col2im_add_stride2(const float* col, const ConvGeom& g, float* dx) {
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
      const float* q0 = p0 + h * W0;
      const float* q1 = p1 + h * W1;
      for (int64_t j = 0; j < W1; ++j) {  // one loop over both phases, as in im2col_stride2
        r[2 * j] += q0[j];
        r[2 * j + 1] += q1[j];
      }
      if (W0 > W1) r[2 * W1] += q0[W1];
    }
  }
}

MINIDL_AVX2_CLONE void col2im(const float* col, const ConvGeom& g, float* dx, bool accumulate) {
  if (is_s2k3p1_even(g)) return col2im_s2k3p1(col, g, dx, accumulate);
  if (!accumulate) std::fill(dx, dx + g.C * g.H * g.W, 0.0f);
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
          // iw = ow * stride + shift: add the valid range [lo, hi) of ow (as in im2col) with
          // no per-element test.
          const int64_t shift = kw - g.pad;
          const int64_t lo =
              std::min(g.WO, std::max<int64_t>(0, (-shift + g.stride - 1) / g.stride));
          const int64_t hi = std::max(lo, std::min(g.WO, (g.W - shift + g.stride - 1) / g.stride));
          if (g.stride == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) dxrow[ow + shift] += in[ow];
          } else if (g.stride == 2) {  // a constant stride: vectorized (1x1 shortcuts)
            for (int64_t ow = lo; ow < hi; ++ow) dxrow[2 * ow + shift] += in[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dxrow[ow * g.stride + shift] += in[ow];
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
