// minidl — Winograd F(m x m, 3 x 3): the geometry it applies to, and the entry points, which run
// the active SIMD path's kernels (core/simd/winograd.cpp, one copy per path: core/simd.hpp).
#include "core/winograd.hpp"

#include <stdexcept>

#include "core/simd.hpp"

namespace minidl::kernels {

namespace {
/// The active path's function f, which the fuzz build (clang) leaves out.
template <class F>
F winograd_kernel(F f) {
  if (!f) throw std::logic_error("winograd: not compiled into this build");
  return f;
}
}  // namespace

bool winograd_applies(const ConvGeom& g) {
  return g.KH == 3 && g.KW == 3 && g.stride == 1 && g.pad >= 0 && g.pad <= 2 && g.HO >= 1 &&
         g.WO >= 1;
}

int64_t winograd_weight_size(int64_t O, int64_t C) {
  return kWinogradAlpha * kWinogradAlpha * O * C;
}

namespace {
// Adds and multiplies of one 1-d transform (core/simd/winograd.cpp's bt_1d, at_1d, a_1d).
constexpr double kBtOps = kWinogradTile == 4 ? 24 : 4;
constexpr double kAtOps = kWinogradTile == 4 ? 13 : 4;
constexpr double kAOps = kWinogradTile == 4 ? 10 : 3;
constexpr double kA = kWinogradAlpha, kM = kWinogradTile;
double tiles(int64_t N, const ConvGeom& g) {
  return static_cast<double>(N) * ((g.HO + kWinogradTile - 1) / kWinogradTile) *
         ((g.WO + kWinogradTile - 1) / kWinogradTile);
}
}  // namespace

double winograd_forward_flops(int64_t N, const ConvGeom& g, int64_t O) {
  const double C = static_cast<double>(g.C), o = static_cast<double>(O);
  return tiles(N, g) * (2.0 * kA * kA * o * C + C * 2.0 * kA * kBtOps + o * (kA + kM) * kAtOps);
}

double winograd_backward_weight_flops(int64_t N, const ConvGeom& g, int64_t O) {
  const double C = static_cast<double>(g.C), o = static_cast<double>(O);
  return tiles(N, g) * (2.0 * kA * kA * o * C + C * 2.0 * kA * kBtOps + o * (kM + kA) * kAOps);
}

void winograd_weight_transform(float* V, const float* w, int64_t O, int64_t C, bool flipped) {
  winograd_kernel(simd::active().winograd_weight_transform)(V, w, O, C, flipped);
}

void winograd_forward(float* y, const float* x, const float* V, int64_t N, const ConvGeom& g,
                      int64_t O, bool accumulate) {
  winograd_kernel(simd::active().winograd_forward)(y, x, V, N, g, O, accumulate);
}

void winograd_backward_weight(float* dw, const float* dy, const float* x, int64_t N,
                              const ConvGeom& g, int64_t O) {
  winograd_kernel(simd::active().winograd_backward_weight)(dw, dy, x, N, g, O);
}

}  // namespace minidl::kernels
