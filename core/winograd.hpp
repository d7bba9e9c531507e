// minidl — Winograd convolution F(m x m, 3 x 3) for 3x3, stride-1 convolutions (forward, input
// gradient and weight gradient). Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", CVPR 2016, Section 4 (the 2-d nesting of the 1-d minimal filtering algorithm).
//
// Letters: N, C, O, H, W, HO, WO as in core/ops.hpp's legend, and for the tiles:
//   m output tile size, a = m + 2 input tile size, P tiles per image = ceil(HO/m) * ceil(WO/m),
//   T tiles in a chunk of images, xi = one of the a*a transform-domain positions.
//
// One output tile Y (m x m) from one input tile D (a x a) and one filter g (3 x 3), Eq. (8):
//   Y = A^T [ (G g G^T) (.) (B^T D B) ] A
// Summed over input channels, each transform position xi becomes a GEMM over the chunk's tiles:
//   U[xi] [C, T] = (B^T D B)[xi],   V[xi] [O, C] = (G g G^T)[xi],   M[xi] [O, T] = V[xi] U[xi]
// and the output is Y = A^T M A per tile (Lavin & Gray, Eq. (10)-(12)).
// Gradients (the adjoints of the three linear maps):
//   input:  dx is the stride-1 convolution of dy with the flipped, transposed filters
//           (wf[c, o] = rot180(w[o, c])) and padding 2 - pad, so it runs through the same
//           forward routine with the transform of wf;
//   weight: dM = A dY A^T per tile, dV[xi] [O, C] = sum over tiles dM[xi] U[xi]^T (a GEMM), and
//           dw = G^T dV G.
// Chunks of whole images are spread over the OpenMP pool; OpenBLAS runs single-threaded inside.
// Precision: F(4x4, 3x3) multiplies by up to 8 and 1/24 in its transforms, so float results
// differ from direct convolution by about 1e-6 to 1e-5 relative (the oracle test reports it).
#pragma once

#include <cstdint>

#include "core/kernels.hpp"

namespace minidl::kernels {

/// Output tile size m of the Winograd algorithm used (F(m x m, 3 x 3)); a = m + 2. 4 by default;
/// building with -DMINIDL_WINOGRAD_TILE=2 selects F(2x2, 3x3) (for comparisons: README, Speed).
#ifndef MINIDL_WINOGRAD_TILE
#define MINIDL_WINOGRAD_TILE 4
#endif
static_assert(MINIDL_WINOGRAD_TILE == 2 || MINIDL_WINOGRAD_TILE == 4,
              "MINIDL_WINOGRAD_TILE must be 2 or 4");
constexpr int kWinogradTile = MINIDL_WINOGRAD_TILE;
constexpr int kWinogradAlpha = kWinogradTile + 2;

/// The FLOPs winograd_forward runs (for the profiler's roofline, core/profiler.hpp): per tile of
/// m x m outputs of an image, the GEMMs' 2 a^2 O C, the input transforms' C * 2a 1-d transforms
/// B^T d and the output transforms' O * (a + m) 1-d transforms A^T v (their adds and multiplies
/// as core/simd/winograd.cpp writes them). The filter transforms (cached) are not counted.
double winograd_forward_flops(int64_t N, const ConvGeom& g, int64_t O);
/// The FLOPs winograd_backward_weight runs: per tile, the GEMMs' 2 a^2 O C, the input
/// transforms' and the adjoint output transforms' (O * (m + a) 1-d transforms A y).
double winograd_backward_weight_flops(int64_t N, const ConvGeom& g, int64_t O);

/// True when g is a 3x3 stride-1 convolution with padding 0, 1 or 2 (what winograd_* compute).
bool winograd_applies(const ConvGeom& g);

/// Floats of a transformed weight: a * a * O * C.
int64_t winograd_weight_size(int64_t O, int64_t C);

/// V[xi][o][c] = (G w[o, c] G^T)[xi]. w [O, C, 3, 3] -> V [a*a, O, C].
/// flipped = true transforms the filters of the input gradient instead,
/// wf[c, o, kh, kw] = w[o, c, 2 - kh, 2 - kw], giving V [a*a, C, O].
void winograd_weight_transform(float* V, const float* w, int64_t O, int64_t C, bool flipped);

/// y [N, O, HO, WO] = (or, accumulate = true, +=) the 3x3 stride-1 cross-correlation of
/// x [N, C, H, W] (geometry g, zero padding g.pad) with the filters whose transform is
/// V [a*a, O, C]. Requires winograd_applies(g).
void winograd_forward(float* y, const float* x, const float* V, int64_t N, const ConvGeom& g,
                      int64_t O, bool accumulate);

/// dw [O, C, 3, 3] += d(sum(y * dy)) / dw for y = conv(x, w) of geometry g, from
/// x [N, C, H, W] and dy [N, O, HO, WO]. Deterministic for a given thread count.
void winograd_backward_weight(float* dw, const float* dy, const float* x, int64_t N,
                              const ConvGeom& g, int64_t O);

}  // namespace minidl::kernels
