// Every SIMD path this build has and this CPU runs (core/simd.hpp: "native" in a native build;
// "sse2", "avx2" and "avx512" in a portable one) against naive kernels in double: the Winograd
// transforms (forward and weight gradient, full and partial chunks of 16 images), GELU and
// BatchNorm's loops. Each path's table is called directly, whatever MINIDL_ISA chose, so one
// run of the suite checks every path the CPU has; the rest of the suite runs the active path.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/kernels.hpp"
#include "core/random.hpp"
#include "core/simd.hpp"
#include "core/winograd.hpp"

using namespace minidl;

namespace {

std::vector<float> random_vector(int64_t n, Generator& g, float scale = 1.0f, float shift = 0.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = shift + scale * g.normal();
  return v;
}

/// y [N, O, HO, WO] = the 3x3 stride-1 cross-correlation of x [N, C, H, W] (zero padding) with
/// w [O, C, 3, 3], in double.
std::vector<double> naive_conv(const std::vector<float>& x, const std::vector<float>& w, int64_t N,
                               const kernels::ConvGeom& g, int64_t O) {
  std::vector<double> y(N * O * g.HO * g.WO, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < g.HO; ++oh)
        for (int64_t ow = 0; ow < g.WO; ++ow) {
          double s = 0.0;
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t kh = 0; kh < 3; ++kh)
              for (int64_t kw = 0; kw < 3; ++kw) {
                const int64_t ih = oh - g.pad + kh, iw = ow - g.pad + kw;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                s += double(x[((n * g.C + c) * g.H + ih) * g.W + iw]) *
                     w[((o * g.C + c) * 3 + kh) * 3 + kw];
              }
          y[((n * O + o) * g.HO + oh) * g.WO + ow] = s;
        }
  return y;
}

/// dw [O, C, 3, 3] = d(sum(y * dy)) / dw for y = naive_conv(x, w), in double.
std::vector<double> naive_conv_dw(const std::vector<float>& x, const std::vector<float>& dy,
                                  int64_t N, const kernels::ConvGeom& g, int64_t O) {
  std::vector<double> dw(O * g.C * 9, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t kh = 0; kh < 3; ++kh)
          for (int64_t kw = 0; kw < 3; ++kw) {
            double s = 0.0;
            for (int64_t oh = 0; oh < g.HO; ++oh)
              for (int64_t ow = 0; ow < g.WO; ++ow) {
                const int64_t ih = oh - g.pad + kh, iw = ow - g.pad + kw;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                s += double(x[((n * g.C + c) * g.H + ih) * g.W + iw]) *
                     dy[((n * O + o) * g.HO + oh) * g.WO + ow];
              }
            dw[((o * g.C + c) * 3 + kh) * 3 + kw] += s;
          }
  return dw;
}

/// max |a - b| / max |b|.
template <class A>
double relative_error(const A& a, const std::vector<double>& b) {
  double err = 0.0, scale = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return err / scale;
}

}  // namespace

TEST_CASE("the SIMD path in use is MINIDL_ISA's when it is set, and the CPU runs it",
          "[simd][kernels]") {
  const std::vector<const simd::Kernels*> paths = simd::runnable();
  REQUIRE(!paths.empty());
  const simd::Kernels& active = simd::active();
  CHECK(std::any_of(paths.begin(), paths.end(), [&](auto* k) { return k == &active; }));
  const char* env = std::getenv("MINIDL_ISA");
  if (env && *env) {
    CHECK(std::string(active.name) == env);
  } else {
    CHECK(&active == paths.back());  // the widest the CPU runs
  }
  const std::vector<std::string> built = simd::built_paths();
  CHECK(built.size() == (built[0] == "native" ? 1u : 3u));
  CHECK(simd::describe().find(active.name) == 0);
}

TEST_CASE("every SIMD path's Winograd kernels match a naive convolution", "[simd][kernels]") {
  Generator gen(32);
  // 36 images: with 1 or 2 threads, chunks of 16 (whole vectors of lanes) and a partial one of 4
  // (one lane at a time). 9 x 9 planes (not whole tiles), padding 1 and 0; 16 -> 8 channels.
  // 24 x 24 and 8 x 8 planes move through the 16- and 8-column block transposes; 7 -> 11 and
  // 5 -> 7 channels leave every remainder of the transform GEMMs' register blocks (6 rows of
  // the product, 3 x 3 dot products of the weight gradient).
  struct Shape4 {
    int64_t C, O, H, W;
  };
  for (const simd::Kernels* k : simd::runnable()) {
    if (!k->winograd_forward) continue;  // the fuzz build has none
    for (const Shape4 s : {Shape4{16, 8, 9, 9}, Shape4{7, 11, 24, 24}, Shape4{5, 7, 8, 8}})
      for (int64_t pad : {1, 0}) {
        const int64_t N = 36, C = s.C, O = s.O, H = s.H, W = s.W;
        const kernels::ConvGeom g{C, H, W, 3, 3, 1, pad, H + 2 * pad - 2, W + 2 * pad - 2};
        INFO("path " << k->name << ", " << C << " -> " << O << " channels, " << H << " x " << W
                     << ", pad " << pad);
        const std::vector<float> x = random_vector(N * C * H * W, gen);
        const std::vector<float> w = random_vector(O * C * 9, gen, 0.2f);
        const std::vector<float> dy = random_vector(N * O * g.HO * g.WO, gen);
        std::vector<float> V(kernels::winograd_weight_size(O, C));
        k->winograd_weight_transform(V.data(), w.data(), O, C, /*flipped=*/false);
        std::vector<float> y(N * O * g.HO * g.WO, 0.0f);
        k->winograd_forward(y.data(), x.data(), V.data(), N, g, O, /*accumulate=*/false);
        CHECK(relative_error(y, naive_conv(x, w, N, g, O)) < 2e-5);
        std::vector<float> dw(O * C * 9, 0.0f);
        k->winograd_backward_weight(dw.data(), dy.data(), x.data(), N, g, O);
        CHECK(relative_error(dw, naive_conv_dw(x, dy, N, g, O)) < 2e-5);
      }
  }
}

TEST_CASE("every SIMD path's small GEMM matches a naive product in double", "[simd][kernels]") {
  // The paths that have one (AVX2): every remainder of its register block (6 rows of C), one
  // and several column panels, K = 1 and long; C = A B and C += A B.
  Generator gen(33);
  int checked = 0;
  for (const simd::Kernels* k : simd::runnable()) {
    if (!k->gemm_nn) continue;
    for (int64_t M : {1, 5, 6, 7, 13})
      for (int64_t N : {16, 48})
        for (int64_t K : {1, 8, 27, 288}) {
          INFO("path " << k->name << ", M " << M << ", N " << N << ", K " << K);
          const std::vector<float> A = random_vector(M * K, gen), B = random_vector(K * N, gen);
          std::vector<double> ref(M * N, 0.0);
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
              for (int64_t l = 0; l < K; ++l) ref[i * N + j] += double(A[i * K + l]) * B[l * N + j];
          std::vector<float> C(M * N, std::nanf(""));  // beta = 0: NaN never survives
          k->gemm_nn(M, N, K, A.data(), B.data(), C.data(), false);
          CHECK(relative_error(C, ref) < 1e-6);
          // C += A B onto a C0 that differs per element.
          std::vector<float> C0 = random_vector(M * N, gen), Cacc = C0;
          std::vector<double> ref_acc(M * N);
          for (int64_t i = 0; i < M * N; ++i) ref_acc[i] = ref[i] + C0[i];
          k->gemm_nn(M, N, K, A.data(), B.data(), Cacc.data(), true);
          CHECK(relative_error(Cacc, ref_acc) < 1e-6);
          ++checked;
        }
  }
  // Checked wherever the CPU runs AVX2 (CI's machines do); a build without the path checks none.
  if (simd::built_paths().size() > 1 && __builtin_cpu_supports("avx2")) CHECK(checked > 0);
}

TEST_CASE("every SIMD path's transpose equals its definition, whole blocks and edges",
          "[simd][kernels]") {
  // 8 x 8 register blocks and the rows % 8, cols % 8 edges: a copy, so exact; = and +=.
  Generator gen(35);
  int checked = 0;
  for (const simd::Kernels* k : simd::runnable()) {
    if (!k->transpose) continue;
    for (int64_t rows : {1, 7, 8, 16, 27})
      for (int64_t cols : {1, 8, 13, 64, 256}) {
        INFO("path " << k->name << ", rows " << rows << ", cols " << cols);
        const std::vector<float> src = random_vector(rows * cols, gen);
        const std::vector<float> base = random_vector(rows * cols, gen);
        std::vector<float> dst(rows * cols, std::nanf("")), acc = base;
        k->transpose(src.data(), rows, cols, dst.data(), false);
        k->transpose(src.data(), rows, cols, acc.data(), true);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            REQUIRE(dst[c * rows + r] == src[r * cols + c]);
            REQUIRE(acc[c * rows + r] == base[c * rows + r] + src[r * cols + c]);
          }
        ++checked;
      }
  }
  CHECK(checked >= 25);  // every build has at least one path with the transpose (not the fuzz one)
}

TEST_CASE("every SIMD path's GELU kernels match the double-precision reference",
          "[simd][kernels][gelu]") {
  std::vector<float> x;
  for (int i = -16 * 64; i <= 16 * 64; ++i) x.push_back(i / 64.0f);
  const int64_t n = static_cast<int64_t>(x.size());
  Generator gen(33);
  const std::vector<float> dy = random_vector(n, gen);
  std::vector<float> ref(n), dref(n, 0.5f);
  kernels::gelu_reference(ref.data(), x.data(), n);
  kernels::gelu_backward_add_reference(dref.data(), dy.data(), x.data(), n);
  for (const simd::Kernels* k : simd::runnable()) {
    INFO("path " << k->name);
    std::vector<float> y(n), dx(n, 0.5f);  // dx accumulates onto 0.5
    k->gelu(y.data(), x.data(), n);
    k->gelu_backward_add(dx.data(), dy.data(), x.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      INFO("x = " << x[i]);
      REQUIRE(std::fabs(y[i] - ref[i]) <= 1e-6 * std::fabs(ref[i]) + 1e-30);
      REQUIRE(std::fabs(dx[i] - dref[i]) <= 2e-6 * (std::fabs(dy[i]) + 0.5f));
    }
  }
}

TEST_CASE("every SIMD path's BatchNorm loops match naive loops in double", "[simd][kernels]") {
  // x [N, C, S] with S = 49 (not a multiple of any vector width), a mean far from 0.
  const int64_t N = 5, C = 3, S = 49, c = 1;
  Generator gen(34);
  const std::vector<float> x = random_vector(N * C * S, gen, 2.0f, 30.0f);
  const std::vector<float> dy = random_vector(N * C * S, gen);
  const std::vector<float> res = random_vector(N * C * S, gen);
  const std::vector<float> gamma{0.5f, 1.5f, -2.0f}, beta{0.1f, -0.2f, 0.3f};
  // Naive channel statistics in double.
  double mean = 0.0, m2 = 0.0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < S; ++i) mean += x[(n * C + c) * S + i];
  mean /= double(N * S);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < S; ++i) m2 += std::pow(x[(n * C + c) * S + i] - mean, 2);
  const float mu = float(mean), is = float(1.0 / std::sqrt(m2 / double(N * S) + 1e-5));
  for (const simd::Kernels* k : simd::runnable()) {
    INFO("path " << k->name);
    const simd::ChannelMoments m = k->bn_channel_moments(x.data(), N, C, S, c);
    CHECK(std::fabs(m.mean - mean) < 1e-5 * std::fabs(mean));
    CHECK(std::fabs(m.m2 - m2) < 1e-4 * m2);
    // Per-image moments, at rows first + n.
    std::vector<double> rows(2 * (N + 2), -1.0);
    k->bn_image_moments(rows.data(), 2, x.data(), N, C, S, c);
    for (int64_t n = 0; n < N; ++n) {
      double im = 0.0, iv = 0.0;
      for (int64_t i = 0; i < S; ++i) im += x[(n * C + c) * S + i];
      im /= double(S);
      for (int64_t i = 0; i < S; ++i) iv += std::pow(x[(n * C + c) * S + i] - im, 2);
      CHECK(std::fabs(rows[(2 + n) * 2] - im) < 1e-5 * std::fabs(im));
      CHECK(std::fabs(rows[(2 + n) * 2 + 1] - iv) < 1e-4 * iv);
    }
    CHECK(rows[0] == -1.0);  // rows before `first` untouched
    // Forward: y = max(gamma x_hat + beta + r, 0) for every channel (mean, inv_std per channel).
    const std::vector<float> means{mu - 1.0f, mu, mu + 1.0f}, inv{is, is, 2.0f * is};
    for (int variant = 0; variant < 3; ++variant) {  // plain, relu, residual + relu
      const bool relu = variant > 0;
      const float* r = variant == 2 ? res.data() : nullptr;
      std::vector<float> y(N * C * S);
      k->bn_forward(y.data(), means.data(), inv.data(), relu, x.data(), gamma.data(), beta.data(),
                    r, N, C, S);
      std::vector<double> ref(N * C * S);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t ch = 0; ch < C; ++ch)
          for (int64_t i = 0; i < S; ++i) {
            const int64_t j = (n * C + ch) * S + i;
            double v = gamma[ch] * (double(x[j]) - means[ch]) * inv[ch] + beta[ch];
            if (r) v += r[j];
            ref[j] = relu ? std::max(v, 0.0) : v;
          }
      INFO("forward variant " << variant);
      CHECK(relative_error(y, ref) < 1e-5);
    }
    // Backward of channel c: the row sums (and dr), then dx, with and without the ReLU mask.
    std::vector<float> y(N * C * S);
    k->bn_forward(y.data(), means.data(), inv.data(), true, x.data(), gamma.data(), beta.data(),
                  nullptr, N, C, S);
    for (bool relu : {false, true}) {
      INFO("relu " << relu);
      double sum_dy = 0.0, sum_dy_xhat = 0.0;
      std::vector<double> ref_rows(2 * N);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t off = (n * C + c) * S;
        double r1 = 0.0, r2 = 0.0;
        for (int64_t i = 0; i < S; ++i) {
          const double g = (relu && !(y[off + i] > 0.0f)) ? 0.0 : dy[off + i];
          r1 += g;
          r2 += g * (double(x[off + i]) - mu) * is;
        }
        ref_rows[2 * n] = r1;
        ref_rows[2 * n + 1] = r2;
        sum_dy += r1;
        sum_dy_xhat += r2;
      }
      // Channel sums, with dr = dy * (y > 0) assigned (fresh), then added onto 1.
      for (bool fresh : {true, false}) {
        std::vector<float> dr(N * C * S, 1.0f);
        const auto [s1, s2] = k->bn_channel_gradient_sums(dr.data(), fresh, dy.data(), y.data(),
                                                          x.data(), N, C, S, c, mu, is, relu);
        CHECK(std::fabs(s1 - sum_dy) < 1e-4 * (1.0 + std::fabs(sum_dy)));
        CHECK(std::fabs(s2 - sum_dy_xhat) < 1e-4 * (1.0 + std::fabs(sum_dy_xhat)));
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < S; ++i) {
            const int64_t j = (n * C + c) * S + i;
            const double dr_ref = (y[j] > 0.0f ? dy[j] : 0.0) + (fresh ? 0.0 : 1.0);
            REQUIRE(std::fabs(dr[j] - dr_ref) < 1e-6);
          }
      }
      // Image by image, at rows first + n (no dr).
      std::vector<double> rows(2 * (N + 1), -1.0);
      k->bn_image_gradient_sums(rows.data(), 1, nullptr, false, dy.data(), y.data(), x.data(), N, C,
                                S, c, mu, is, relu);
      CHECK(rows[0] == -1.0);
      for (int64_t i = 0; i < 2 * N; ++i)
        CHECK(std::fabs(rows[2 + i] - ref_rows[i]) < 1e-4 * (1.0 + std::fabs(ref_rows[i])));
      const float kk = gamma[c] * is, a = float(sum_dy / (N * S)), b = float(sum_dy_xhat / (N * S));
      for (bool training : {true, false}) {
        std::vector<float> dx(N * C * S, 2.0f);
        k->bn_channel_dx(dx.data(), /*fresh=*/false, dy.data(), y.data(), x.data(), N, C, S, c, mu,
                         is, kk, a, b, training, relu);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < S; ++i) {
            const int64_t j = (n * C + c) * S + i;
            const double g = (relu && !(y[j] > 0.0f)) ? 0.0 : dy[j];
            const double xh = (double(x[j]) - mu) * is;
            const double ref = 2.0 + (training ? kk * (g - a - xh * b) : kk * g);
            REQUIRE(std::fabs(dx[j] - ref) < 1e-5 * (1.0 + std::fabs(ref)));
            CHECK(dx[j - c * S + ((c + 1) % C) * S] == 2.0f);  // other channels untouched
          }
      }
    }
  }
}
