// minidl — the SIMD kernels and the instruction set they were compiled for (run-time dispatch).
//
// The hot vector code (the Winograd transforms, GELU, BatchNorm's per-row loops) lives in
// core/simd/*.cpp, which CMake compiles once per instruction set into its own namespace
// (minidl::simd::<path>); each path's table() gathers its functions. The rest of core/ calls them
// through active(), the table chosen once per process:
//   - native build (the default, -march=native): one path, "native", compiled like everything
//     else for the build machine's CPU;
//   - portable build (cmake -DMINIDL_NATIVE=OFF): the library is compiled for baseline x86-64 and
//     the kernels three times, "sse2" (-march=x86-64), "avx2" (-march=x86-64-v3: AVX2, FMA) and
//     "avx512" (-march=x86-64-v4: AVX-512F/BW/CD/DQ/VL); active() takes the widest the CPU runs
//     (__builtin_cpu_supports, which also checks that the OS saves the vector registers).
// The environment variable MINIDL_ISA=sse2|avx2|avx512 chooses the path of a portable build
// instead (the tests run every path on one machine this way); a path the CPU cannot run is
// refused with a std::runtime_error naming what is missing, and so is any MINIDL_ISA other than
// "native" in a native build.
//
// Each path computes the same formulas; float results differ between paths in the last bits
// (the order of vector partial sums, FMA contraction), as between two -march builds.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/kernels.hpp"

namespace minidl::simd {

/// Mean and M2 = sum((x - mean)^2) of one channel.
struct ChannelMoments {
  double mean, m2;
};

/// The kernels of one instruction set. Shapes in core/ops.hpp's letters; x [N, C, S] for
/// BatchNorm (S = H * W), channel c; dx, dr "(= when fresh, else +=)".
struct Kernels {
  const char* name;     ///< "native", "sse2", "avx2" or "avx512" (MINIDL_ISA's names)
  const char* vectors;  ///< the widest vectors its code uses, e.g. "512-bit vectors (AVX-512F)"

  // Winograd F(m x m, 3 x 3) (core/winograd.hpp has the contracts); null in the fuzz build.
  void (*winograd_weight_transform)(float* V, const float* w, int64_t O, int64_t C, bool flipped);
  void (*winograd_forward)(float* y, const float* x, const float* V, int64_t N,
                           const kernels::ConvGeom& g, int64_t O, bool accumulate);
  void (*winograd_backward_weight)(float* dw, const float* dy, const float* x, int64_t N,
                                   const kernels::ConvGeom& g, int64_t O);

  // A small row-major GEMM without packing (core/simd/winograd.cpp), on the paths where it beats
  // OpenBLAS (AVX2 without AVX-512, where OpenBLAS's Haswell kernels pack both operands on every
  // call); null elsewhere, and kernels::gemm calls OpenBLAS.
  /// C [M, N] = A [M, K] B [K, N], or C += A B when accumulate; dense. Requires N % 16 == 0.
  void (*gemm_nn)(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C,
                  bool accumulate);
  /// dst [cols, rows] = src [rows, cols]^T (+= when accumulate), dense, in 8 x 8 register
  /// blocks (core/simd/winograd.cpp); null in the fuzz build.
  void (*transpose)(const float* src, int64_t rows, int64_t cols, float* dst, bool accumulate);

  // GELU (core/kernels.hpp has the contracts).
  void (*gelu)(float* y, const float* x, int64_t n);
  void (*gelu_backward_add)(float* dx, const float* dy, const float* x, int64_t n);

  // BatchNorm's loops (core/norm.cpp calls them; the formulas are there).
  /// Channel c's mean and M2: float sums of x - x[c, first value] within each image's row
  /// (vectorized), double across rows.
  ChannelMoments (*bn_channel_moments)(const float* x, int64_t N, int64_t C, int64_t S, int64_t c);
  /// rows_c[(first + n) * 2 + {0, 1}] = image n's mean and M2 of channel c (float sums around the
  /// image's first value, then double).
  void (*bn_image_moments)(double* rows_c, int64_t first, const float* x, int64_t N, int64_t C,
                           int64_t S, int64_t c);
  /// y [N, C, S] = gamma * (x - mean) * inv_std + beta (gamma, beta may be null: 1, 0), then
  /// + residual (may be null) and max(., 0) when relu; over the OpenMP pool.
  void (*bn_forward)(float* y, const float* mean, const float* inv_std, bool relu, const float* x,
                     const float* gamma, const float* beta, const float* residual, int64_t N,
                     int64_t C, int64_t S);
  /// Channel c's (sum dy', sum dy' x_hat), x_hat = (x - mu) is, dy' = dy * (y > 0) when relu
  /// (float within an image's row, double across rows); and dr = dy * (y > 0) when dr is not null.
  std::pair<double, double> (*bn_channel_gradient_sums)(float* dr, bool dr_fresh, const float* dy,
                                                        const float* y, const float* x, int64_t N,
                                                        int64_t C, int64_t S, int64_t c, float mu,
                                                        float is, bool relu);
  /// The same sums image by image: rows_c[(first + n) * 2 + {0, 1}] = image n's (float) sums.
  void (*bn_image_gradient_sums)(double* rows_c, int64_t first, float* dr, bool dr_fresh,
                                 const float* dy, const float* y, const float* x, int64_t N,
                                 int64_t C, int64_t S, int64_t c, float mu, float is, bool relu);
  /// Channel c's dx: training, k (dy' - a - x_hat b); eval, k dy'.
  void (*bn_channel_dx)(float* dx, bool dx_fresh, const float* dy, const float* y, const float* x,
                        int64_t N, int64_t C, int64_t S, int64_t c, float mu, float is, float k,
                        float a, float b, bool training, bool relu);
};

/// The table of the path in use, chosen on the first call (MINIDL_ISA, else the CPU). Throws
/// std::runtime_error for a MINIDL_ISA this build or this CPU cannot run; call it first outside
/// parallel regions (the CLI does at startup) so that the error is a message, not a terminate.
const Kernels& active();

/// Every path this build has that this CPU can run, narrowest first (the tests compare each
/// with the naive kernels).
std::vector<const Kernels*> runnable();

/// Every path this build has, narrowest first (also those the CPU cannot run).
std::vector<std::string> built_paths();

/// One line for --version: the path in use, how it was chosen and what else the build has, e.g.
/// "avx512, 512-bit vectors (AVX-512F); chosen by the CPU (MINIDL_ISA=sse2|avx2|avx512 chooses);
/// portable build with sse2, avx2, avx512".
std::string describe();

}  // namespace minidl::simd
