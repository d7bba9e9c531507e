// minidl — Winograd F(m x m, 3 x 3) convolution kernels (see core/winograd.hpp for the math).
// One SIMD path's copy (core/simd.hpp): compiled once per instruction set, into
// minidl::simd::MINIDL_SIMD_NS; core/winograd.cpp calls the active path's.
//
// Layout. The batch is cut into chunks of NB (up to 16) images; in every buffer the image is
// the innermost index, so one tile element of the whole chunk is one vector of NB floats:
//   Xt  [C, PH, PW, NB]  the chunk's input planes, zero-padded      (gather_chunk)
//   U   [a*a, C, T]      transformed input tiles B^T D B, T = Pb * NB columns for a block of
//                        Pb tiles                                    (input_tile)
//   Mt  [a*a, O, T]      products V[xi] U[xi], one GEMM per xi       (kernels::gemm)
//   Yt  [O, QH, QW, NB]  output tiles A^T M A                        (output_tile)
// then back to NCHW (scatter_chunk). The weight gradient gathers dy the same way, transforms
// its tiles with A dY A^T (output_tile_adjoint) and accumulates dV[xi] += dM[xi] U[xi]^T.
// Each 2-d transform is the 1-d one applied to the tile's columns, then to its rows.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "core/simd/isa.hpp"
#include "core/tensor.hpp"
#include "core/winograd.hpp"

namespace minidl::simd::MINIDL_SIMD_NS {

using kernels::gemm;
using kernels::kWinogradAlpha;
using kernels::kWinogradTile;

namespace {

constexpr int m = kWinogradTile;
constexpr int a = kWinogradAlpha;

// Scratch floats, uninitialized, counted as tensor storage (storage_bytes). Not Storage: a
// std::vector member that GCC emits out of line here (vector<float>::assign at -O2 on some
// builds) is a weak symbol compiled with this path's -march flags, and the linker may keep it
// for every caller, baseline code included. A type of this file's anonymous namespace has
// internal linkage: nothing emitted for it is shared (tests/CMakeLists.txt,
// simd_objects_define_no_shared_code).
class Scratch {
 public:
  explicit Scratch(int64_t n) : n_(n), p_(static_cast<float*>(std::malloc(bytes()))) {
    if (p_ == nullptr) throw std::bad_alloc();
    count_storage_bytes(static_cast<int64_t>(bytes()));
  }
  ~Scratch() {
    count_storage_bytes(-static_cast<int64_t>(bytes()));
    std::free(p_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* data() { return p_; }

 private:
  std::size_t bytes() const { return static_cast<std::size_t>(n_ > 0 ? n_ : 1) * sizeof(float); }
  int64_t n_;
  float* p_;
};

// ---- The transform matrices (Lavin & Gray 2016, Section 4.1 and 4.2) ----------------------
// F(4x4, 3x3), interpolation points 0, +-1, +-2, +-1/2 (wincnn's choice), as used by Lavin & Gray:
//   B^T (6x6), G (6x3), A^T (4x6).
// F(2x2, 3x3), points 0, +-1: B^T (4x4), G (4x3), A^T (2x4).
template <int M>
struct Matrices;
template <>
struct Matrices<4> {
  static constexpr float G[6][3] = {{1.f / 4, 0, 0},
                                    {-1.f / 6, -1.f / 6, -1.f / 6},
                                    {-1.f / 6, 1.f / 6, -1.f / 6},
                                    {1.f / 24, 1.f / 12, 1.f / 6},
                                    {1.f / 24, -1.f / 12, 1.f / 6},
                                    {0, 0, 1}};
};
template <>
struct Matrices<2> {
  static constexpr float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
};

// ---- Lanes ---------------------------------------------------------------------------------
// A chunk of kLanes images is processed as one vector per tile element: `lanes` is a GCC/Clang
// vector extension type, which compiles to one AVX-512 register, two AVX2 registers, or
// SSE/scalar code elsewhere (the portable fallback). Smaller chunks use plain floats, one lane
// at a time, through the same templates.
constexpr int64_t kLanes = 16;
typedef float lanes __attribute__((vector_size(kLanes * sizeof(float))));
typedef float lanes_unaligned __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));

template <class V>
inline V load(const float* p) {
  if constexpr (std::is_same_v<V, float>) {
    return *p;
  } else {
    return *reinterpret_cast<const lanes_unaligned*>(p);
  }
}
template <class V>
inline void store(float* p, V v) {
  if constexpr (std::is_same_v<V, float>) {
    *p = v;
  } else {
    *reinterpret_cast<lanes_unaligned*>(p) = v;
  }
}

// Eight floats: one AVX2 register (the transposes below and the GEMMs of the transform domain).
typedef float lanes8 __attribute__((vector_size(8 * sizeof(float))));
typedef float lanes8_unaligned __attribute__((vector_size(8 * sizeof(float)), aligned(4)));
inline lanes8 load8(const float* p) { return *reinterpret_cast<const lanes8_unaligned*>(p); }
inline void store8(float* p, lanes8 v) { *reinterpret_cast<lanes8_unaligned*>(p) = v; }

// out[k * os + v] (= or +=) in[v * is + k] for v, k < 8: an 8 x 8 block transpose in registers,
// three butterfly stages that each swap one bit of the row index with the same bit of the column
// index (eight registers on AVX2, where a 16 x 16 block in 16-float vectors would need 32).
template <bool kAccumulate>
inline void transpose8(const float* in, int64_t is, float* out, int64_t os) {
  typedef int32_t mask __attribute__((vector_size(8 * sizeof(int32_t))));
  lanes8 r[8];
  for (int v = 0; v < 8; ++v) r[v] = load8(in + v * is);
#define MINIDL_STAGE(b, lo, hi)               \
  for (int i = 0; i < 8; ++i) {               \
    if (i & (b)) continue;                    \
    const lanes8 x = r[i], y = r[i | (b)];    \
    r[i] = __builtin_shuffle(x, y, lo);       \
    r[i | (b)] = __builtin_shuffle(x, y, hi); \
  }
  // lo[e] = e & b ? 8 + (e ^ b) : e;   hi[e] = e & b ? 8 + e : e ^ b
  MINIDL_STAGE(4, (mask{0, 1, 2, 3, 8, 9, 10, 11}), (mask{4, 5, 6, 7, 12, 13, 14, 15}))
  MINIDL_STAGE(2, (mask{0, 1, 8, 9, 4, 5, 12, 13}), (mask{2, 3, 10, 11, 6, 7, 14, 15}))
  MINIDL_STAGE(1, (mask{0, 8, 2, 10, 4, 12, 6, 14}), (mask{1, 9, 3, 11, 5, 13, 7, 15}))
#undef MINIDL_STAGE
  for (int k = 0; k < 8; ++k) {
    if constexpr (kAccumulate) {
      store8(out + k * os, load8(out + k * os) + r[k]);
    } else {
      store8(out + k * os, r[k]);
    }
  }
}

// out[k * os + v] (= or +=) in[v * is + k] for v, k < kLanes: a 16 x 16 block transpose in
// registers, four butterfly stages that each swap one bit of the row index with the same bit
// of the column index (moves whole vectors between the NCHW planes and the lane layout).
template <bool kAccumulate>
inline void transpose_block(const float* in, int64_t is, float* out, int64_t os) {
  static_assert(kLanes == 16, "transpose_block is written for 16 lanes");
#if !defined(__AVX512F__)  // four 8 x 8 blocks, each in registers
  for (int v0 = 0; v0 < kLanes; v0 += 8)
    for (int k0 = 0; k0 < kLanes; k0 += 8)
      transpose8<kAccumulate>(in + v0 * is + k0, is, out + k0 * os + v0, os);
#else
  typedef int32_t mask __attribute__((vector_size(kLanes * sizeof(int32_t))));
  lanes r[kLanes];
  for (int v = 0; v < kLanes; ++v) r[v] = load<lanes>(in + v * is);
#define MINIDL_STAGE(b, lo, hi)               \
  for (int i = 0; i < kLanes; ++i) {          \
    if (i & (b)) continue;                    \
    const lanes x = r[i], y = r[i | (b)];     \
    r[i] = __builtin_shuffle(x, y, lo);       \
    r[i | (b)] = __builtin_shuffle(x, y, hi); \
  }
  // lo[e] = e & b ? 16 + (e ^ b) : e;   hi[e] = e & b ? 16 + e : e ^ b
  MINIDL_STAGE(8, (mask{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}),
               (mask{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}))
  MINIDL_STAGE(4, (mask{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}),
               (mask{4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}))
  MINIDL_STAGE(2, (mask{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}),
               (mask{2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}))
  MINIDL_STAGE(1, (mask{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}),
               (mask{1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}))
#undef MINIDL_STAGE
  for (int k = 0; k < kLanes; ++k) {
    if constexpr (kAccumulate) {
      store<lanes>(out + k * os, load<lanes>(out + k * os) + r[k]);
    } else {
      store<lanes>(out + k * os, r[k]);
    }
  }
#endif
}

// out[k * os + v] (= or +=) in[v * is + k] for v < kLanes, k < 8: a 16 x 8 block, the last
// columns of a row narrower than 16 (8 x 8 planes).
template <bool kAccumulate>
inline void transpose_half_block(const float* in, int64_t is, float* out, int64_t os) {
  for (int v0 = 0; v0 < kLanes; v0 += 8) transpose8<kAccumulate>(in + v0 * is, is, out + v0, os);
}

// ---- The transform domain's GEMMs ----------------------------------------------------------
// Mt[xi] = V[xi] U[xi] and dV[xi] += dM[xi] U[xi]^T are small (O, C <= 256, T >= 128 columns)
// and there are a*a = 36 of them per block. OpenBLAS's AVX-512 kernels multiply such shapes
// without packing (its "small matrix" path); its AVX2 (Haswell) kernels pack both operands on
// every call, which cost about 30% of resnet20's training step on the AVX2 path (perf, Xeon,
// MINIDL_ISA=avx2). U is already laid out as a packed panel needs it (T innermost), so on AVX2
// gemm_nn below reads V and U where they lie (kernels::gemm calls it through the path's table,
// Kernels::gemm_nn, where MINIDL_SIMD_OWN_GEMM); elsewhere OpenBLAS runs. The weight
// gradient's dV += dM U^T stays with OpenBLAS on every path: a kernel of 3 x 3 dot products
// (8 lanes each, summed at the end) was twice as accurate against double but under 1% faster on
// resnet20, and its different rounding took airbench94's 15 steps out of the tolerance of
// tests/test_airbench_pytorch.cpp (whitening bias 1.2e-2 from PyTorch's, against 2.9e-3).
// C[R, kLanes] = A[R, K] B[K, kLanes]; rows of A lda apart, of B ldb, of C ldc. R accumulators
// of kLanes floats (R = 6: twelve AVX2 registers) live in registers through the K loop; each
// step loads one row of B and broadcasts R elements of A (the register blocking of Goto & van
// de Geijn, "Anatomy of High-Performance Matrix Multiplication", 2008, Section 6, without the
// packing).
// With Acc, the accumulators start from C (C += A B) instead of zero.
template <int R, bool Acc>
inline void gemm_nn_rows(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                         float* C, int64_t ldc) {
  static_assert(kLanes == 16, "two 8-float vectors per row");
  lanes8 acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if constexpr (Acc) {
      acc[r][0] = load8(C + r * ldc);
      acc[r][1] = load8(C + r * ldc + 8);
    } else {
      acc[r][0] = acc[r][1] = lanes8{};
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const lanes8 b0 = load8(B + k * ldb), b1 = load8(B + k * ldb + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float x = A[r * lda + k];
      acc[r][0] += x * b0;
      acc[r][1] += x * b1;
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    store8(C + r * ldc, acc[r][0]);
    store8(C + r * ldc + 8, acc[r][1]);
  }
}

// The last `rows` < R rows of a column panel: gemm_nn_rows<rows>, the count made a constant.
template <int R, bool Acc>
inline void gemm_nn_rest(int64_t rows, int64_t K, const float* A, const float* B, int64_t N,
                         float* C) {
  if constexpr (R > 0) {
    if (rows == R) return gemm_nn_rows<R, Acc>(K, A, K, B, N, C, N);
    gemm_nn_rest<R - 1, Acc>(rows, K, A, B, N, C);
  }
}

// C[M, N] = A[M, K] B[K, N] (C += A B with Acc), row-major and dense (leading dimensions K, N,
// N). Requires N % kLanes == 0.
template <bool Acc>
__attribute__((noinline)) void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A,
                                       const float* B, float* C) {
  constexpr int R = 6;
  for (int64_t n0 = 0; n0 < N; n0 += kLanes) {
    int64_t m0 = 0;
    for (; m0 + R <= M; m0 += R)
      gemm_nn_rows<R, Acc>(K, A + m0 * K, K, B + n0, N, C + m0 * N + n0, N);
    gemm_nn_rest<R - 1, Acc>(M - m0, K, A + m0 * K, B + n0, N, C + m0 * N + n0);
  }
}

// ---- 1-d transforms on a (or m) values of type V, strided ------------------------------------

// r = B^T d (a values in, a out): d[j * ds], r[i * rs].
template <class V>
inline void bt_1d(const V* d, int ds, V* r, int rs) {
  if constexpr (m == 4) {
    const V d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
    r[0] = 4.f * d0 - 5.f * d2 + d4;
    r[rs] = -4.f * (d1 + d2) + d3 + d4;
    r[2 * rs] = 4.f * (d1 - d2) - d3 + d4;
    r[3 * rs] = 2.f * (d3 - d1) - d2 + d4;
    r[4 * rs] = 2.f * (d1 - d3) - d2 + d4;
    r[5 * rs] = 4.f * d1 - 5.f * d3 + d5;
  } else {
    const V d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
    r[0] = d0 - d2;
    r[rs] = d1 + d2;
    r[2 * rs] = d2 - d1;
    r[3 * rs] = d1 - d3;
  }
}

// y = A^T v (a values in, m out).
template <class V>
inline void at_1d(const V* v, int vs, V* y, int ys) {
  if constexpr (m == 4) {
    const V v0 = v[0], v1 = v[vs], v2 = v[2 * vs], v3 = v[3 * vs], v4 = v[4 * vs], v5 = v[5 * vs];
    const V s12 = v1 + v2, d12 = v1 - v2, s34 = v3 + v4, d34 = v3 - v4;
    y[0] = v0 + s12 + s34;
    y[ys] = d12 + 2.f * d34;
    y[2 * ys] = s12 + 4.f * s34;
    y[3 * ys] = d12 + 8.f * d34 + v5;
  } else {
    const V v0 = v[0], v1 = v[vs], v2 = v[2 * vs], v3 = v[3 * vs];
    y[0] = v0 + v1 + v2;
    y[ys] = v1 - v2 - v3;
  }
}

// v = A y (m values in, a out): the adjoint of at_1d.
template <class V>
inline void a_1d(const V* y, int ys, V* v, int vs) {
  if constexpr (m == 4) {
    const V y0 = y[0], y1 = y[ys], y2 = y[2 * ys], y3 = y[3 * ys];
    const V e = y0 + y2, o1 = y1 + y3, e4 = y0 + 4.f * y2, o2 = 2.f * y1 + 8.f * y3;
    v[0] = y0;
    v[vs] = e + o1;
    v[2 * vs] = e - o1;
    v[3 * vs] = e4 + o2;
    v[4 * vs] = e4 - o2;
    v[5 * vs] = y3;
  } else {
    const V y0 = y[0], y1 = y[ys];
    v[0] = y0;
    v[vs] = y0 + y1;
    v[2 * vs] = y0 - y1;
    v[3 * vs] = -y1;
  }
}

// ---- 2-d tile transforms ---------------------------------------------------------------------
// Element (row, col) of a tile is at in[row * rs + col * cs], element xi of a transform at
// t[xi * xs]; each holds V (one lane, or kLanes lanes). The loops have constant bounds and are
// unrolled, so a tile lives in registers.

// U = B^T D B: tile D (a x a) -> transform (a*a).
template <class V>
inline void input_tile(const float* in, int64_t rs, int64_t cs, float* out, int64_t xs) {
  V d[a][a], t[a][a], u[a][a];
  for (int j = 0; j < a; ++j)
    for (int l = 0; l < a; ++l) d[j][l] = load<V>(in + j * rs + l * cs);
  for (int l = 0; l < a; ++l) bt_1d<V>(&d[0][l], a, &t[0][l], a);  // columns
  for (int i = 0; i < a; ++i) bt_1d<V>(t[i], 1, u[i], 1);          // rows
  for (int i = 0; i < a; ++i)
    for (int k = 0; k < a; ++k) store<V>(out + (i * a + k) * xs, u[i][k]);
}

// Y = A^T M A: transform (a*a) -> output tile (m x m).
template <class V>
inline void output_tile(const float* in, int64_t xs, float* out, int64_t rs, int64_t cs) {
  V q[a][a], t[m][a], y[m][m];
  for (int j = 0; j < a; ++j)
    for (int l = 0; l < a; ++l) q[j][l] = load<V>(in + (j * a + l) * xs);
  for (int l = 0; l < a; ++l) at_1d<V>(&q[0][l], a, &t[0][l], a);  // columns
  for (int i = 0; i < m; ++i) at_1d<V>(t[i], 1, y[i], 1);          // rows
  for (int i = 0; i < m; ++i)
    for (int k = 0; k < m; ++k) store<V>(out + i * rs + k * cs, y[i][k]);
}

// dM = A dY A^T: output-tile gradient (m x m) -> transform (a*a), the adjoint of output_tile.
template <class V>
inline void output_tile_adjoint(const float* in, int64_t rs, int64_t cs, float* out, int64_t xs) {
  V y[m][m], t[a][m], q[a][a];
  for (int i = 0; i < m; ++i)
    for (int k = 0; k < m; ++k) y[i][k] = load<V>(in + i * rs + k * cs);
  for (int k = 0; k < m; ++k) a_1d<V>(&y[0][k], m, &t[0][k], m);  // columns
  for (int j = 0; j < a; ++j) a_1d<V>(t[j], 1, q[j], 1);          // rows
  for (int j = 0; j < a; ++j)
    for (int l = 0; l < a; ++l) store<V>(out + (j * a + l) * xs, q[j][l]);
}

// Runs f(V{}, v) over nv lanes: once with V = lanes (v = 0) when nv == kLanes, else once per
// lane with V = float. f applies a tile transform at lane offset v.
template <class F>
inline void over_lanes(int64_t nv, F&& f) {
  if (nv == kLanes) {
    f(lanes{}, int64_t{0});
  } else {
    for (int64_t v = 0; v < nv; ++v) f(0.0f, v);
  }
}

// ---- Tiling ------------------------------------------------------------------------------

// The batch is cut into chunks of NB images, which become the vector lanes of every tile
// transform: a chunk's planes are stored image-innermost ([C, rows, cols, NB], "CHWN"), so a tile
// transform reads and writes whole vectors and needs no gather. A block is Pb tiles of CB chunks:
// T = CB * Pb * NB transform columns per GEMM (sub-chunk s owns columns [s * Pb * NB, ...)).
// Large planes: CB = 1 and a chunk's tiles are cut into blocks of Pb, sized so that a block's U
// and M stay near the cache (C * T, O * T about kBlockFloats per transform position; measured
// on resnet20, Xeon, AVX-512, 2 threads, median of 3 alternating runs: 1024: 545,
// 2048: 567, 4096: 563, 8192: 525, 16384: 518 images/s). Small planes (few tiles per image) and
// wide layers: T is at least kMinColumns, taking several chunks into one block (Pb = P), since
// a GEMM of [O, C] by [C, T] with T = 16 spends its time packing the weights: airbench94's 256
// -> 256 convs on 7 x 7 and 3 x 3 planes (P = 4 and 1). kMinColumns measured on airbench94's
// training step, batch 1024 (Xeon, 2 threads, adjacent runs, this VM drifting by 30%): 16
// (the rule before, T = 16 there): 214, 254, 223, 164 images/s; 128: 279, 272, 242, 205; 32:
// 233, 267; 64: 246, 276; 256: 231. resnet20 (batch 128), 16 against 128: 331/359,
// 356/412, 384/350.
constexpr int64_t kBlockFloats = 2048;
constexpr int64_t kMinColumns = 128;

struct Tiling {
  int64_t TH, TW, P;   // tiles per column, per row, per image
  int64_t PH, PW;      // zero-padded input plane: (TH * m + 2) x (TW * m + 2)
  int64_t QH, QW;      // output plane rounded up to whole tiles: TH * m x TW * m
  int64_t NB, chunks;  // images per chunk (lanes), number of chunks
  int64_t Pb;          // tiles per block
  int64_t CB, groups;  // chunks per block (CB > 1 only when Pb = P), number of chunk groups
};

Tiling make_tiling(const ConvGeom& g, int64_t N, int64_t O) {
  Tiling t{};
  t.TH = (g.HO + m - 1) / m;
  t.TW = (g.WO + m - 1) / m;
  t.P = t.TH * t.TW;
  t.PH = t.TH * m + 2;
  t.PW = t.TW * m + 2;
  t.QH = t.TH * m;
  t.QW = t.TW * m;
  const int64_t threads = std::max(1, omp_get_max_threads());
  t.NB = std::max<int64_t>(1, std::min(kLanes, (N + threads - 1) / threads));
  t.chunks = (N + t.NB - 1) / t.NB;
  const int64_t columns = std::max(kMinColumns, kBlockFloats / std::max(g.C, O));
  t.Pb = std::max<int64_t>(1, std::min(t.P, columns / t.NB));
  t.CB = 1;
  if (t.Pb == t.P) {  // several chunks per block, keeping at least two groups per thread
    const int64_t most = std::max<int64_t>(1, t.chunks / (2 * threads));
    t.CB = std::max<int64_t>(1, std::min(most, columns / (t.P * t.NB)));
  }
  t.groups = (t.chunks + t.CB - 1) / t.CB;
  return t;
}

// Zeroes planes [C, rows, cols, NB] outside rows [r0, r1) x columns [c0, c1): the padding
// border, written once per buffer; the chunks then overwrite only the interior.
void zero_border(float* p, int64_t C, int64_t rows, int64_t cols, int64_t r0, int64_t r1,
                 int64_t c0, int64_t c1, int64_t NB) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t r = 0; r < rows; ++r) {
      float* row = p + (c * rows + r) * cols * NB;
      if (r < r0 || r >= r1) {
        std::fill(row, row + cols * NB, 0.0f);
      } else {
        std::fill(row, row + c0 * NB, 0.0f);
        std::fill(row + c1 * NB, row + cols * NB, 0.0f);
      }
    }
}

// Xt [C, PH, PW, NB] interior <- the images [n0, n0 + nb) of x [N, C, H, W] (the zero border
// of Xt is never written, so it stays zero). A partial chunk (nb < NB) zeroes Xt first: its
// unused lanes then hold zeros, not stale values that could be NaN (0 * NaN would reach dV).
void gather_chunk(const float* x, const ConvGeom& g, const Tiling& tl, int64_t n0, int64_t nb,
                  float* Xt) {
  const int64_t NB = tl.NB, HW = g.H * g.W;
  if (nb < NB) std::fill(Xt, Xt + g.C * tl.PH * tl.PW * NB, 0.0f);
  const int64_t full = (nb == kLanes) ? g.W / kLanes * kLanes : 0;  // columns moved in blocks
  const int64_t half = (nb == kLanes) ? g.W / 8 * 8 : 0;            // then in half blocks
  // Channel by channel, so that one channel's [PH, PW, NB] slice (tens of KB) stays in cache
  // while its lanes are filled.
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t r = 0; r < g.H; ++r) {
      float* dst = Xt + ((c * tl.PH + g.pad + r) * tl.PW + g.pad) * NB;
      const float* src = x + (n0 * g.C + c) * HW + r * g.W;
      for (int64_t w = 0; w < full; w += kLanes)
        transpose_block<false>(src + w, g.C * HW, dst + w * NB, NB);
      if (half > full) transpose_half_block<false>(src + full, g.C * HW, dst + full * NB, NB);
      for (int64_t v = 0; v < nb; ++v)
        for (int64_t w = std::max(full, half); w < g.W; ++w)
          dst[w * NB + v] = src[v * g.C * HW + w];
    }
  }
}

// y [N, O, HO, WO] (= or +=) the lanes [0, nb) of Yt [O, QH, QW, NB] (the images from n0).
void scatter_chunk(const float* Yt, const Tiling& tl, const ConvGeom& g, int64_t O, int64_t n0,
                   int64_t nb, float* y, bool accumulate) {
  const int64_t NB = tl.NB, HOWO = g.HO * g.WO;
  const int64_t full = (nb == kLanes) ? g.WO / kLanes * kLanes : 0;
  const int64_t half = (nb == kLanes) ? g.WO / 8 * 8 : 0;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t r = 0; r < g.HO; ++r) {
      const float* src = Yt + (o * tl.QH + r) * tl.QW * NB;
      float* dst = y + (n0 * O + o) * HOWO + r * g.WO;
      for (int64_t w = 0; w < full; w += kLanes) {
        if (accumulate) {
          transpose_block<true>(src + w * NB, NB, dst + w, O * HOWO);
        } else {
          transpose_block<false>(src + w * NB, NB, dst + w, O * HOWO);
        }
      }
      if (half > full) {  // rows move as [NB, 8] -> [8, NB] blocks, here the adjoint direction
        for (int v0 = 0; v0 < kLanes; v0 += 8) {
          if (accumulate) {
            transpose8<true>(src + full * NB + v0, NB, dst + v0 * O * HOWO + full, O * HOWO);
          } else {
            transpose8<false>(src + full * NB + v0, NB, dst + v0 * O * HOWO + full, O * HOWO);
          }
        }
      }
      for (int64_t v = 0; v < nb; ++v)
        for (int64_t w = std::max(full, half); w < g.WO; ++w) {
          float& d = dst[v * O * HOWO + w];
          d = accumulate ? d + src[w * NB + v] : src[w * NB + v];
        }
    }
}

// U [a*a, C, T], columns [col0, col0 + pb * NB): tiles [p0, p0 + pb) of the chunk in Xt.
void transform_input_block(const float* Xt, const ConvGeom& g, const Tiling& tl, int64_t p0,
                           int64_t pb, float* U, int64_t T, int64_t col0) {
  const int64_t NB = tl.NB;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t p = p0; p < p0 + pb; ++p) {
      const int64_t th = p / tl.TW, tw = p % tl.TW;
      const float* in = Xt + ((c * tl.PH + th * m) * tl.PW + tw * m) * NB;
      float* out = U + c * T + col0 + (p - p0) * NB;
      over_lanes(NB, [&](auto lane, int64_t v) {
        input_tile<decltype(lane)>(in + v, tl.PW * NB, NB, out + v, g.C * T);
      });
    }
}

}  // namespace

void small_gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C,
                   bool accumulate) {
  if (accumulate) return gemm_nn<true>(M, N, K, A, B, C);
  gemm_nn<false>(M, N, K, A, B, C);
}

void transpose(const float* src, int64_t rows, int64_t cols, float* dst, bool accumulate) {
  // transpose8 on every whole 8 x 8 block; the last rows % 8 rows and cols % 8 columns element
  // by element.
  const int64_t R8 = rows - rows % 8, C8 = cols - cols % 8;
  auto edge = [&](int64_t r, int64_t c) {
    float& d = dst[c * rows + r];
    d = accumulate ? d + src[r * cols + c] : src[r * cols + c];
  };
  for (int64_t r0 = 0; r0 < R8; r0 += 8) {
    for (int64_t c0 = 0; c0 < C8; c0 += 8) {
      const float* in = src + r0 * cols + c0;
      float* out = dst + c0 * rows + r0;
      if (accumulate) {
        transpose8<true>(in, cols, out, rows);
      } else {
        transpose8<false>(in, cols, out, rows);
      }
    }
    for (int64_t c = C8; c < cols; ++c)
      for (int64_t r = r0; r < r0 + 8; ++r) edge(r, c);
  }
  for (int64_t r = R8; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) edge(r, c);
}

void winograd_weight_transform(float* V, const float* w, int64_t O, int64_t C, bool flipped) {
  const auto& G = Matrices<m>::G;
  // Output [a*a, rows, cols]: [a*a, O, C] normally, [a*a, C, O] for the flipped filters.
  const int64_t rows = flipped ? C : O, cols = flipped ? O : C;
#pragma omp parallel for schedule(static) if (O * C >= 256)
  for (int64_t o = 0; o < O; ++o) {
    for (int64_t c = 0; c < C; ++c) {
      float f[3][3];
      const float* src = w + (o * C + c) * 9;
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw)
          f[kh][kw] = flipped ? src[(2 - kh) * 3 + (2 - kw)] : src[kh * 3 + kw];
      float gf[a][3];  // G f
      for (int i = 0; i < a; ++i)
        for (int k = 0; k < 3; ++k)
          gf[i][k] = G[i][0] * f[0][k] + G[i][1] * f[1][k] + G[i][2] * f[2][k];
      const int64_t r = flipped ? c : o, s = flipped ? o : c;
      for (int i = 0; i < a; ++i)
        for (int j = 0; j < a; ++j)  // (G f G^T)[i][j]
          V[((i * a + j) * rows + r) * cols + s] =
              gf[i][0] * G[j][0] + gf[i][1] * G[j][1] + gf[i][2] * G[j][2];
    }
  }
}

void winograd_forward(float* y, const float* x, const float* V, int64_t N, const ConvGeom& g,
                      int64_t O, bool accumulate) {
  const Tiling tl = make_tiling(g, N, O);
  const int64_t C = g.C, NB = tl.NB;
#pragma omp parallel
  {
    const int64_t Tmax = tl.CB * tl.Pb * NB;
    Scratch Xt(C * tl.PH * tl.PW * NB), Yt(O * tl.QH * tl.QW * NB), U(a * a * C * Tmax),
        Mt(a * a * O * Tmax);
    zero_border(Xt.data(), C, tl.PH, tl.PW, g.pad, g.pad + g.H, g.pad, g.pad + g.W, NB);
#pragma omp for schedule(static)
    for (int64_t group = 0; group < tl.groups; ++group) {
      const int64_t c0 = group * tl.CB, cb = std::min(tl.CB, tl.chunks - c0);
      for (int64_t p0 = 0; p0 < tl.P; p0 += tl.Pb) {
        const int64_t pb = std::min(tl.Pb, tl.P - p0), T = cb * pb * NB;
        for (int64_t s = 0; s < cb; ++s) {  // (cb > 1 only with one block, p0 = 0)
          const int64_t n0 = (c0 + s) * NB, nb = std::min(NB, N - n0);
          if (p0 == 0) gather_chunk(x, g, tl, n0, nb, Xt.data());
          transform_input_block(Xt.data(), g, tl, p0, pb, U.data(), T, s * pb * NB);
        }
        for (int xi = 0; xi < a * a; ++xi) {  // Mt[xi] [O, T] = V[xi] [O, C] U[xi] [C, T]
          gemm(false, false, O, T, C, 1.0f, V + xi * O * C, U.data() + xi * C * T, 0.0f,
               Mt.data() + xi * O * T);
        }
        for (int64_t s = 0; s < cb; ++s) {
          for (int64_t o = 0; o < O; ++o)
            for (int64_t p = p0; p < p0 + pb; ++p) {
              const int64_t th = p / tl.TW, tw = p % tl.TW;
              const float* in = Mt.data() + o * T + (s * pb + p - p0) * NB;
              float* out = Yt.data() + ((o * tl.QH + th * m) * tl.QW + tw * m) * NB;
              over_lanes(NB, [&](auto lane, int64_t v) {
                output_tile<decltype(lane)>(in + v, O * T, out + v, tl.QW * NB, NB);
              });
            }
          if (p0 + pb == tl.P) {  // the chunk's last block: its output is complete
            const int64_t n0 = (c0 + s) * NB, nb = std::min(NB, N - n0);
            scatter_chunk(Yt.data(), tl, g, O, n0, nb, y, accumulate);
          }
        }
      }
    }
  }
}

void winograd_backward_weight(float* dw, const float* dy, const float* x, int64_t N,
                              const ConvGeom& g, int64_t O) {
  const Tiling tl = make_tiling(g, N, O);
  const int64_t C = g.C, NB = tl.NB;
  // dy is gathered like an input: O channels of HO x WO into [O, QH, QW, NB], no padding.
  const ConvGeom gy{O, g.HO, g.WO, 3, 3, 1, 0, g.HO, g.WO};
  Tiling tly = tl;
  tly.PH = tl.QH;
  tly.PW = tl.QW;
  const int nthreads = omp_get_max_threads();
  const int64_t nv = a * a * O * C;
  Scratch dV(nthreads * nv);  // per-thread partial sums [nthreads][a*a, O, C], summed in order
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    const int64_t Tmax = tl.CB * tl.Pb * NB;
    Scratch Xt(C * tl.PH * tl.PW * NB), Dt(O * tl.QH * tl.QW * NB), U(a * a * C * Tmax),
        dM(a * a * O * Tmax);
    zero_border(Xt.data(), C, tl.PH, tl.PW, g.pad, g.pad + g.H, g.pad, g.pad + g.W, NB);
    zero_border(Dt.data(), O, tl.QH, tl.QW, 0, g.HO, 0, g.WO, NB);
    float* part = dV.data() + tid * nv;
    std::memset(part, 0, static_cast<std::size_t>(nv) * sizeof(float));
#pragma omp for schedule(static)
    for (int64_t group = 0; group < tl.groups; ++group) {
      const int64_t c0 = group * tl.CB, cb = std::min(tl.CB, tl.chunks - c0);
      for (int64_t p0 = 0; p0 < tl.P; p0 += tl.Pb) {
        const int64_t pb = std::min(tl.Pb, tl.P - p0), T = cb * pb * NB;
        for (int64_t s = 0; s < cb; ++s) {  // (cb > 1 only with one block, p0 = 0)
          const int64_t n0 = (c0 + s) * NB, nb = std::min(NB, N - n0);
          if (p0 == 0) {
            gather_chunk(x, g, tl, n0, nb, Xt.data());
            // Dt [O, QH, QW, NB] <- dy, zero beyond HO x WO (never written) and, in a last
            // partial chunk, in the unused lanes (so they add nothing to dV).
            gather_chunk(dy, gy, tly, n0, nb, Dt.data());  // (zeroes Dt first when nb < NB)
          }
          transform_input_block(Xt.data(), g, tl, p0, pb, U.data(), T, s * pb * NB);
          for (int64_t o = 0; o < O; ++o)
            for (int64_t p = p0; p < p0 + pb; ++p) {
              const int64_t th = p / tl.TW, tw = p % tl.TW;
              const float* in = Dt.data() + ((o * tl.QH + th * m) * tl.QW + tw * m) * NB;
              float* out = dM.data() + o * T + (s * pb + p - p0) * NB;
              over_lanes(NB, [&](auto lane, int64_t v) {
                output_tile_adjoint<decltype(lane)>(in + v, tl.QW * NB, NB, out + v, O * T);
              });
            }
        }
        for (int xi = 0; xi < a * a; ++xi) {  // dV[xi] [O, C] += dM[xi] [O, T] U[xi]^T [T, C]
          gemm(false, true, O, C, T, 1.0f, dM.data() + xi * O * T, U.data() + xi * C * T, 1.0f,
               part + xi * O * C);
        }
      }
    }
  }
  // dw[o][c] += G^T dV[.][o][c] G, the partial sums added in thread order (deterministic).
  const auto& G = Matrices<m>::G;
  float* dv = dV.data();
#pragma omp parallel for schedule(static) if (nv >= (1 << 14))
  for (int64_t i = 0; i < nv; ++i)
    for (int t = 1; t < nthreads; ++t) dv[i] += dv[t * nv + i];
#pragma omp parallel for schedule(static) if (O * C >= 256)
  for (int64_t o = 0; o < O; ++o) {
    for (int64_t c = 0; c < C; ++c) {
      float v[a][a];
      for (int i = 0; i < a; ++i)
        for (int j = 0; j < a; ++j) v[i][j] = dv[((i * a + j) * O + o) * C + c];
      float gv[3][a];  // G^T v
      for (int p = 0; p < 3; ++p)
        for (int j = 0; j < a; ++j) {
          float s = 0.0f;
          for (int i = 0; i < a; ++i) s += G[i][p] * v[i][j];
          gv[p][j] = s;
        }
      float* d = dw + (o * C + c) * 9;
      for (int p = 0; p < 3; ++p)
        for (int q = 0; q < 3; ++q) {
          float s = 0.0f;
          for (int j = 0; j < a; ++j) s += gv[p][j] * G[j][q];
          d[p * 3 + q] += s;
        }
    }
  }
}

}  // namespace minidl::simd::MINIDL_SIMD_NS
