// minidl — BatchNorm's vectorized loops (core/norm.cpp has the formulas and calls these through
// the active SIMD path's table). One SIMD path's copy (core/simd.hpp): compiled once per
// instruction set, into minidl::simd::MINIDL_SIMD_NS.
// Shapes in core/ops.hpp's letters: x [N, C, S]; one image's row of channel c is the S values at
// (n * C + c) * S. Row sums are float, vectorized (omp simd reductions: lane-wise partial sums,
// then combined); sums across rows are double.
#include <algorithm>

#include "core/simd/isa.hpp"

namespace minidl::simd::MINIDL_SIMD_NS {

ChannelMoments bn_channel_moments(const float* x, int64_t N, int64_t C, int64_t S, int64_t c) {
  const int64_t M = N * S;
  const float shift = x[c * S];
  double sum = 0.0, sq = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const float* p = x + (n * C + c) * S;
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
  sq -= dmean * dmean * static_cast<double>(M);
  return {shift + dmean, sq < 0 ? 0.0 : sq};  // mean = sum(x) / M
}

void bn_image_moments(double* rows_c, int64_t first, const float* x, int64_t N, int64_t C,
                      int64_t S, int64_t c) {
  for (int64_t n = 0; n < N; ++n) {
    const float* p = x + (n * C + c) * S;
    const float shift = p[0];
    float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t i = 0; i < S; ++i) {
      const float d = p[i] - shift;
      s1 += d;
      s2 += d * d;
    }
    const double dmean = static_cast<double>(s1) / static_cast<double>(S);
    const double m2 = static_cast<double>(s2) - dmean * dmean * static_cast<double>(S);
    rows_c[(first + n) * 2] = shift + dmean;
    rows_c[(first + n) * 2 + 1] = m2 < 0 ? 0.0 : m2;
  }
}

void bn_forward(float* y, const float* mean, const float* inv_std, bool relu, const float* x,
                const float* gamma, const float* beta, const float* residual, int64_t N, int64_t C,
                int64_t S) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const float scale = (gamma ? gamma[c] : 1.0f) * inv_std[c];
      const float shift = (beta ? beta[c] : 0.0f) - mean[c] * scale;
      const float* p = x + (n * C + c) * S;
      float* q = y + (n * C + c) * S;
      if (residual) {
        const float* r = residual + (n * C + c) * S;
        for (int64_t i = 0; i < S; ++i) q[i] = std::max(p[i] * scale + shift + r[i], 0.0f);
      } else if (relu) {
        for (int64_t i = 0; i < S; ++i) q[i] = std::max(p[i] * scale + shift, 0.0f);
      } else {
        for (int64_t i = 0; i < S; ++i) q[i] = p[i] * scale + shift;
      }
    }
  }
}

namespace {
/// One image's row of channel c (S values at p, g, yo, r: x, dy, y, dr): (sum dy', sum dy' x_hat),
/// float partial sums (omp simd); dr = dy' (= when r_fresh, else +=) when r is not null. Every
/// load unconditional, so that the ReLU mask is a vector select.
inline std::pair<float, float> row_gradient_sums(float* __restrict r, bool r_fresh,
                                                 const float* __restrict g,
                                                 const float* __restrict yo,
                                                 const float* __restrict p, int64_t S, float mu,
                                                 float is, bool relu) {
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
  if (r) {  // y = max(bn(x) + r, 0): dr = dy * (y > 0)
    if (r_fresh) {
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
  return {s1, s2};
}
}  // namespace

std::pair<double, double> bn_channel_gradient_sums(float* dr, bool dr_fresh, const float* dy,
                                                   const float* y, const float* x, int64_t N,
                                                   int64_t C, int64_t S, int64_t c, float mu,
                                                   float is, bool relu) {
  double sum_dy = 0.0, sum_dy_xhat = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t off = (n * C + c) * S;
    const auto [s1, s2] = row_gradient_sums(dr ? dr + off : nullptr, dr_fresh, dy + off, y + off,
                                            x + off, S, mu, is, relu);
    sum_dy += s1;
    sum_dy_xhat += s2;
  }
  return {sum_dy, sum_dy_xhat};
}

void bn_image_gradient_sums(double* rows_c, int64_t first, float* dr, bool dr_fresh,
                            const float* dy, const float* y, const float* x, int64_t N, int64_t C,
                            int64_t S, int64_t c, float mu, float is, bool relu) {
  for (int64_t n = 0; n < N; ++n) {
    const int64_t off = (n * C + c) * S;
    const auto [s1, s2] = row_gradient_sums(dr ? dr + off : nullptr, dr_fresh, dy + off, y + off,
                                            x + off, S, mu, is, relu);
    rows_c[(first + n) * 2] = s1;
    rows_c[(first + n) * 2 + 1] = s2;
  }
}

void bn_channel_dx(float* dx, bool dx_fresh, const float* dy, const float* y, const float* x,
                   int64_t N, int64_t C, int64_t S, int64_t c, float mu, float is, float k, float a,
                   float b, bool training, bool relu) {
  for (int64_t n = 0; n < N; ++n) {
    const float* __restrict p = x + (n * C + c) * S;
    const float* __restrict g = dy + (n * C + c) * S;
    const float* __restrict yo = y + (n * C + c) * S;
    float* d = dx + (n * C + c) * S;
    for (int64_t i = 0; i < S; ++i) {
      const float gv = g[i], yv = yo[i], xv = p[i];
      const float gi = (relu && !(yv > 0.0f)) ? 0.0f : gv;
      const float v = training ? k * (gi - a - (xv - mu) * is * b) : k * gi;
      d[i] = dx_fresh ? v : d[i] + v;
    }
  }
}

}  // namespace minidl::simd::MINIDL_SIMD_NS
