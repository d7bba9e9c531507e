// minidl — one SIMD path's table of kernels (core/simd.hpp), compiled once per path like the
// kernels themselves, so that `vectors` names the widest vectors of this path's compiler flags.
#include "core/simd/isa.hpp"

#define MINIDL_SIMD_STR2(x) #x
#define MINIDL_SIMD_STR(x) MINIDL_SIMD_STR2(x)

namespace minidl::simd::MINIDL_SIMD_NS {

namespace {
#if defined(__AVX512F__)
constexpr const char* kVectors = "512-bit vectors (AVX-512F)";
#elif defined(__AVX2__)
constexpr const char* kVectors = "256-bit vectors (AVX2)";
#elif defined(__AVX__)
constexpr const char* kVectors = "256-bit vectors (AVX)";
#elif defined(__SSE2__)
constexpr const char* kVectors = "128-bit vectors (SSE2)";
#elif defined(__ARM_NEON)
constexpr const char* kVectors = "128-bit vectors (NEON)";
#else
constexpr const char* kVectors = "none (scalar code)";
#endif
// The small GEMM where this path has its own (core/simd/isa.hpp, MINIDL_SIMD_OWN_GEMM).
#if !defined(MINIDL_SIMD_NO_WINOGRAD) && MINIDL_SIMD_OWN_GEMM
constexpr decltype(Kernels::gemm_nn) kGemmNn = &small_gemm_nn;
#else
constexpr decltype(Kernels::gemm_nn) kGemmNn = nullptr;
#endif
#ifdef MINIDL_SIMD_NO_WINOGRAD  // the fuzz build: core/simd/winograd.cpp is GCC-only
constexpr decltype(Kernels::transpose) kTranspose = nullptr;
#else
constexpr decltype(Kernels::transpose) kTranspose = &transpose;
#endif
}  // namespace

const Kernels& table() {
  static const Kernels kernels{MINIDL_SIMD_STR(MINIDL_SIMD_NS),
                               kVectors,
#ifdef MINIDL_SIMD_NO_WINOGRAD  // the fuzz build (clang): core/simd/winograd.cpp is GCC-only
                               nullptr,
                               nullptr,
                               nullptr,
#else
                               &winograd_weight_transform,
                               &winograd_forward,
                               &winograd_backward_weight,
#endif
                               kGemmNn,
                               kTranspose,
                               &gelu,
                               &gelu_backward_add,
                               &bn_channel_moments,
                               &bn_image_moments,
                               &bn_forward,
                               &bn_channel_gradient_sums,
                               &bn_image_gradient_sums,
                               &bn_channel_dx};
  return kernels;
}

}  // namespace minidl::simd::MINIDL_SIMD_NS
