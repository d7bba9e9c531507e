// minidl — GELU's vectorized float kernels (the contracts and the approximations are in
// core/kernels.hpp). One SIMD path's copy (core/simd.hpp): compiled once per instruction set, into
// minidl::simd::MINIDL_SIMD_NS; kernels::gelu and kernels::gelu_backward_add call the active one.
// The loops vectorize only when GCC may if-convert them: -fno-trapping-math (CMakeLists.txt).
#include <cmath>
#include <cstring>

#include "core/simd/isa.hpp"

namespace minidl::simd::MINIDL_SIMD_NS {

namespace {

/// exp(v) in float for v <= 0 (GELU only needs those): v = n ln2 + r, |r| <= ln2 / 2,
/// exp(r) by its Taylor polynomial of degree 6 (relative error below 2e-7 on that interval),
/// times 2^n built in the exponent bits. v below -87 (exp underflows float) gives 0.
inline float exp_nonpositive(float v) {
  const float kLog2e = 1.44269504f, kLn2Hi = 0.693145752f, kLn2Lo = 1.42860677e-06f;
  const bool underflow = v < -87.0f;
  v = v < -87.0f ? -87.0f : v;
  // n = round(v log2 e): adding and subtracting 1.5 * 2^23 rounds to an integer (|v log2 e| <
  // 2^22). std::floor would do, but GCC does not vectorize a loop that calls it.
  const float kRound = 12582912.0f;
  const float n = (v * kLog2e + kRound) - kRound;
  const float r = (v - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? 0.0f : p * scale;
}

/// erfc(z) / 2 for z = |x| / sqrt 2, and e = exp(-x^2 / 2): Numerical Recipes' erfcc. The
/// exponent -x^2 / 2 reaches -100; rounded to float it would be off by up to 4e-6 (absolute),
/// which exp turns into a relative error as large. So x^2 = hi + lo exactly (an FMA gives lo)
/// and exp(-hi / 2) (an exact argument) is multiplied by exp(R(t) - lo / 2) (a small one).
inline float half_erfc_abs(float x, float* e_out) {
  const float z = std::fabs(x) * 0.707106781f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float r = 0.17087277f;
  r = r * t - 0.82215223f;
  r = r * t + 1.48851587f;
  r = r * t - 1.13520398f;
  r = r * t + 0.27886807f;
  r = r * t - 0.18628806f;
  r = r * t + 0.09678418f;
  r = r * t + 0.37409196f;
  r = r * t + 1.00002368f;
  r = r * t - 1.26551223f;
  const float hi = x * x;
  const float lo = std::fma(x, x, -hi);
  const float e_hi = exp_nonpositive(-0.5f * hi);
  if (e_out) *e_out = e_hi * (1.0f - 0.5f * lo);
  return 0.5f * t * e_hi * exp_nonpositive(r - 0.5f * lo);
}

}  // namespace

void gelu(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float h = half_erfc_abs(x[i], nullptr);  // Phi(-|x|)
    y[i] = x[i] * (x[i] < 0.0f ? h : 1.0f - h);
  }
}

void gelu_backward_add(float* dx, const float* dy, const float* x, int64_t n) {
  const float kInvSqrt2Pi = 0.398942280f;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    float e;
    const float h = half_erfc_abs(x[i], &e);
    const float cdf = x[i] < 0.0f ? h : 1.0f - h;
    dx[i] += dy[i] * (cdf + x[i] * kInvSqrt2Pi * e);
  }
}

}  // namespace minidl::simd::MINIDL_SIMD_NS
