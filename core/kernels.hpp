// minidl — low-level kernels: the one place BLAS is called, im2col/col2im, and the thread pool.
// Threads: one OpenMP pool (`set_num_threads`); ops parallelize over images or channels and call
// OpenBLAS single-threaded from inside, so a run is deterministic for a given thread count.
#pragma once

#include <cstdint>
#include <string>

namespace minidl {

/// Sets the OpenMP pool size (>= 1); OpenBLAS gets the same count (its OpenMP build runs
/// single-threaded inside minidl's parallel loops).
/// Throws std::invalid_argument for n < 1.
void set_num_threads(int n);
int get_num_threads();

/// The BLAS minidl runs on, as OpenBLAS describes itself: its openblas_get_config() (version,
/// build options and, in a DYNAMIC_ARCH build, the CPU core it chose, e.g. "OpenBLAS 0.3.21
/// NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY USE_OPENMP SkylakeX MAX_THREADS=64"), plus ", core
/// <name>" when the configuration does not name the core.
std::string blas_config();

namespace kernels {

/// x[0..n) = value, split over the thread pool for large n (first touch on both cores).
void fill(float* x, int64_t n, float value);

/// Row-major C[M, N] = alpha * op(A) op(B) + beta * C, op = transpose when trans_* is true
/// (A is [M, K] or, transposed, stored [K, M]; likewise B). Wraps cblas_sgemm, except for the
/// products C = A B and C += A B of one thread inside a parallel region that small_gemm_takes:
/// those run the SIMD path's own kernel (core/simd.hpp, Kernels::gemm_nn). M, N, K and C are
/// BLAS's names here, not the dimension legend's.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          const float* B, float beta, float* C);

/// True when the SIMD path in use has its own kernel for a small C = A B (AVX2 without AVX-512)
/// and it takes this shape: N a multiple of 16, K at most 1,152 (a panel of B, K x 16 floats,
/// stays in L2). That kernel multiplies few rows of A as fast as many, so callers need no
/// transposed form for narrow products.
bool small_gemm_takes(int64_t N, int64_t K);

/// Geometry of a 2-d convolution on one image (letters: core/ops.hpp's legend).
struct ConvGeom {
  int64_t C, H, W;      // input channels, height, width
  int64_t KH, KW;       // kernel size
  int64_t stride, pad;  // same in both directions
  int64_t HO, WO;       // output height, width
};

/// im2col: x [C, H, W] -> col [R, HO * WO], R = C * KH * KW (zero padding), row (c, kh, kw).
void im2col(const float* x, const ConvGeom& g, float* col);
/// col2im: the adjoint of im2col; writes (accumulate false) or adds (true) col [R, HO * WO]
/// into dx [C, H, W].
void col2im(const float* col, const ConvGeom& g, float* dx, bool accumulate);

/// GELU, exact (erf) form, in float and vectorizable: y[i] = x Phi(x) for i < n, with
///   Phi(x) = erfc(-x / sqrt 2) / 2,  erfc(z) = t exp(-z^2 + R(t)) for z >= 0, t = 1 / (1 + z/2)
/// (the Chebyshev fit of Numerical Recipes, 2nd ed., Section 6.2, `erfcc`, relative error below
/// 1.2e-7 for every z >= 0; erfc(-z) = 2 - erfc(z)) and exp by range reduction and a degree-6
/// polynomial. Agrees with the double-precision 0.5 x (1 + erf(x / sqrt 2)) to a few float
/// ulps, relative, also in the far negative tail (tests/test_gradcheck.cpp, "the vectorized gelu
/// kernels agree with the double-precision reference", against gelu_reference).
void gelu(float* y, const float* x, int64_t n);
/// dx[i] += dy[i] (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi): GELU's derivative,
/// by the same approximations as gelu.
void gelu_backward_add(float* dx, const float* dy, const float* x, int64_t n);
/// The naive versions, in double: Phi(x) = erfc(-x / sqrt 2) / 2 with std::erfc (not
/// (1 + erf(x / sqrt 2)) / 2, which cancels to 0 below x = -8 in double and x = -6 in float,
/// as PyTorch's float GELU does), phi with std::exp. What gelu and gelu_backward_add are
/// tested against.
void gelu_reference(float* y, const float* x, int64_t n);
void gelu_backward_add_reference(float* dx, const float* dy, const float* x, int64_t n);

}  // namespace kernels
}  // namespace minidl
