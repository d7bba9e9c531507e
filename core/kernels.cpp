// minidl — BLAS wrapper, im2col/col2im, thread pool control.
#include "core/kernels.hpp"

#include <cblas.h>
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

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

int get_num_threads() { return omp_get_max_threads(); }

namespace kernels {

void fill(float* x, int64_t n, float value) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, const float* B, float beta, float* C) {
  const int lda = static_cast<int>(trans_a ? M : K);
  const int ldb = static_cast<int>(trans_b ? K : N);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, lda, B, ldb, beta, C, static_cast<int>(N));
}

void im2col(const float* x, const ConvGeom& g, float* col) {
  const int64_t HWO = g.HO * g.WO;
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * g.W;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        float* row = col + ((c * g.KH + kh) * g.KW + kw) * HWO;
        for (int64_t oh = 0; oh < g.HO; ++oh) {
          const int64_t ih = oh * g.stride - g.pad + kh;
          float* out = row + oh * g.WO;
          if (ih < 0 || ih >= g.H) {
            std::memset(out, 0, sizeof(float) * g.WO);
            continue;
          }
          const float* xrow = xc + ih * g.W;
          if (g.stride == 1) {
            // iw = ow - pad + kw: a shifted copy with zero edges.
            const int64_t shift = kw - g.pad;
            int64_t lo = std::max<int64_t>(0, -shift);
            int64_t hi = std::min<int64_t>(g.WO, g.W - shift);
            if (hi < lo) hi = lo;
            for (int64_t ow = 0; ow < lo; ++ow) out[ow] = 0.0f;
            std::memcpy(out + lo, xrow + lo + shift, sizeof(float) * (hi - lo));
            for (int64_t ow = hi; ow < g.WO; ++ow) out[ow] = 0.0f;
          } else {
            for (int64_t ow = 0; ow < g.WO; ++ow) {
              const int64_t iw = ow * g.stride - g.pad + kw;
              out[ow] = (iw >= 0 && iw < g.W) ? xrow[iw] : 0.0f;
            }
          }
        }
      }
    }
  }
}

void col2im_add(const float* col, const ConvGeom& g, float* dx) {
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

}  // namespace kernels
}  // namespace minidl
