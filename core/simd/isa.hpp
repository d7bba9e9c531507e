// minidl — the functions each SIMD path defines, in its own namespace minidl::simd::<path>
// (core/simd.hpp explains the paths). Only core/simd/*.cpp include this header: CMake compiles
// them once per path with -DMINIDL_SIMD_NS=<path> and that path's -march flags.
#pragma once

#include <cstdint>
#include <utility>

#include "core/simd.hpp"

#ifndef MINIDL_SIMD_NS
#error \
    "core/simd/*.cpp are compiled once per SIMD path with -DMINIDL_SIMD_NS=<path> (CMakeLists.txt)"
#endif

namespace minidl::simd::MINIDL_SIMD_NS {

using kernels::ConvGeom;

// core/simd/winograd.cpp
void winograd_weight_transform(float* V, const float* w, int64_t O, int64_t C, bool flipped);
void winograd_forward(float* y, const float* x, const float* V, int64_t N, const ConvGeom& g,
                      int64_t O, bool accumulate);
void winograd_backward_weight(float* dw, const float* dy, const float* x, int64_t N,
                              const ConvGeom& g, int64_t O);

// core/simd/winograd.cpp: the small GEMM (Kernels::gemm_nn), compiled where
// MINIDL_SIMD_OWN_GEMM is 1: AVX2 with FMA and without AVX-512.
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define MINIDL_SIMD_OWN_GEMM 1
#else
#define MINIDL_SIMD_OWN_GEMM 0
#endif
void small_gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C,
                   bool accumulate);
// core/simd/winograd.cpp, every path: Kernels::transpose.
void transpose(const float* src, int64_t rows, int64_t cols, float* dst, bool accumulate);

// core/simd/gelu.cpp
void gelu(float* y, const float* x, int64_t n);
void gelu_backward_add(float* dx, const float* dy, const float* x, int64_t n);

// core/simd/norm.cpp
ChannelMoments bn_channel_moments(const float* x, int64_t N, int64_t C, int64_t S, int64_t c);
void bn_image_moments(double* rows_c, int64_t first, const float* x, int64_t N, int64_t C,
                      int64_t S, int64_t c);
void bn_forward(float* y, const float* mean, const float* inv_std, bool relu, const float* x,
                const float* gamma, const float* beta, const float* residual, int64_t N, int64_t C,
                int64_t S);
std::pair<double, double> bn_channel_gradient_sums(float* dr, bool dr_fresh, const float* dy,
                                                   const float* y, const float* x, int64_t N,
                                                   int64_t C, int64_t S, int64_t c, float mu,
                                                   float is, bool relu);
void bn_image_gradient_sums(double* rows_c, int64_t first, float* dr, bool dr_fresh,
                            const float* dy, const float* y, const float* x, int64_t N, int64_t C,
                            int64_t S, int64_t c, float mu, float is, bool relu);
void bn_channel_dx(float* dx, bool dx_fresh, const float* dy, const float* y, const float* x,
                   int64_t N, int64_t C, int64_t S, int64_t c, float mu, float is, float k, float a,
                   float b, bool training, bool relu);

// core/simd/table.cpp: this path's table.
const Kernels& table();

}  // namespace minidl::simd::MINIDL_SIMD_NS
