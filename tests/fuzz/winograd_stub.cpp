// Fuzz build only (MINIDL_FUZZ=ON): core/simd/winograd.cpp uses GCC's __builtin_shuffle, which
// clang lacks, so the clang build leaves it out and replaces core/winograd.cpp with this stub.
// winograd_applies() says no, so convolutions take the im2col path; the other entry points are then
// never called. The readers under fuzz do not convolve at all.
#include <cstdio>
#include <cstdlib>

#include "core/winograd.hpp"

namespace minidl::kernels {

namespace {
[[noreturn]] void unavailable(const char* what) {
  std::fprintf(stderr, "minidl fuzz build: %s called, but Winograd is not compiled in\n", what);
  std::abort();
}
}  // namespace

bool winograd_applies(const ConvGeom&) { return false; }
double winograd_forward_flops(int64_t, const ConvGeom&, int64_t) { return 0.0; }
double winograd_backward_weight_flops(int64_t, const ConvGeom&, int64_t) { return 0.0; }
int64_t winograd_weight_size(int64_t, int64_t) { unavailable("winograd_weight_size"); }
void winograd_weight_transform(float*, const float*, int64_t, int64_t, bool) {
  unavailable("winograd_weight_transform");
}
void winograd_forward(float*, const float*, const float*, int64_t, const ConvGeom&, int64_t, bool) {
  unavailable("winograd_forward");
}
void winograd_backward_weight(float*, const float*, const float*, int64_t, const ConvGeom&,
                              int64_t) {
  unavailable("winograd_backward_weight");
}

}  // namespace minidl::kernels
