// Winograd convolution: the cached transformed weight is reused while the weight is unchanged
// and recomputed after every change (an optimizer step, load_state_dict, a write through data()).
// Correctness against a naive convolution is tests/test_conv_oracle.cpp; the hidden case
// "[.precision]" at the end measures Winograd's and GEMM's float32 error on airbench94's shapes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/autograd.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/winograd.hpp"
#include "gradcheck.hpp"
#include "layers/conv2d.hpp"
#include "optim/sgd.hpp"

using namespace minidl;
using minidl::testing::randn;

namespace {

/// The cache entry conv2d keeps on a weight (key 0: forward filters), or null.
const DerivedCache* forward_cache(const Tensor& w) {
  for (const DerivedCache& d : w.impl()->derived)
    if (d.key == 0) return &d;
  return nullptr;
}

/// conv2d with a fresh copy of w: a tensor that has never been cached.
Tensor reference(const Tensor& x, const Tensor& w) {
  return ops::conv2d(x, w.clone(), Tensor(), 1, 1);
}

bool same(const Tensor& a, const Tensor& b) { return a.vec() == b.vec(); }

}  // namespace

TEST_CASE("Winograd: the transformed weight is cached while the weight is unchanged",
          "[winograd]") {
  REQUIRE(ops::conv2d_uses_winograd(16, 3, 1, 1));
  Generator g(21);
  Tensor x = randn({3, 16, 8, 8}, g);
  Tensor w = randn({8, 16, 3, 3}, g, 0.1f);  // frozen (no requires_grad), as in BN-only training
  NoGradGuard ng;
  Tensor y1 = ops::conv2d(x, w, Tensor(), 1, 1);
  const DerivedCache* c = forward_cache(w);
  REQUIRE(c != nullptr);
  const float* cached = c->data.data();
  const uint64_t version = c->version;
  Tensor y2 = ops::conv2d(x, w, Tensor(), 1, 1);
  CHECK(forward_cache(w)->data.data() == cached);  // same buffer, not recomputed
  CHECK(forward_cache(w)->version == version);
  CHECK(same(y1, y2));
  CHECK(same(y1, reference(x, w)));
}

TEST_CASE("Winograd: a write through data() invalidates the cached transform", "[winograd]") {
  Generator g(22);
  Tensor x = randn({2, 16, 8, 8}, g);
  Tensor w = randn({8, 16, 3, 3}, g, 0.1f);
  NoGradGuard ng;
  Tensor before = ops::conv2d(x, w, Tensor(), 1, 1);
  w.data()[5] += 1.0f;  // mutable access bumps the version
  Tensor after = ops::conv2d(x, w, Tensor(), 1, 1);
  CHECK_FALSE(same(before, after));
  CHECK(same(after, reference(x, w)));
}

TEST_CASE(
    "Winograd: an optimizer step invalidates the cached transforms (forward and input "
    "gradient)",
    "[winograd]") {
  Generator g(23);
  Tensor x = randn({2, 16, 8, 8}, g, 1.0f, 0.0f, /*requires_grad=*/true);
  Tensor w = randn({8, 16, 3, 3}, g, 0.1f, 0.0f, /*requires_grad=*/true);
  Tensor dy = randn({2, 8, 8, 8}, g);
  optim::SGD opt({w}, {0.5f, 0.9f, 0.0f, false});
  for (int step = 0; step < 3; ++step) {
    INFO("step " << step);
    Tensor y = ops::conv2d(x, w, Tensor(), 1, 1);
    // Forward and input gradient agree with a never-cached copy of the current weight.
    Tensor x2 = x.clone();
    x2.set_requires_grad(true);
    Tensor y_ref = ops::conv2d(x2, w.clone(), Tensor(), 1, 1);
    CHECK(same(y, y_ref));
    x.zero_grad();
    w.zero_grad();
    y.backward(dy);
    y_ref.backward(dy);
    CHECK(same(x.grad(), x2.grad()));
    opt.step();
  }
}

TEST_CASE("Winograd: load_state_dict invalidates the cached transform", "[winograd]") {
  Generator g(24);
  Conv2d conv(Conv2dOptions(16, 8, 3).padding(1).bias(false), g);
  Conv2d other(Conv2dOptions(16, 8, 3).padding(1).bias(false), g);
  Tensor x = randn({2, 16, 8, 8}, g);
  NoGradGuard ng;
  conv.eval();
  Tensor before = conv(x);
  conv.load_state_dict(other.state_dict());
  Tensor after = conv(x);
  CHECK_FALSE(same(before, after));
  CHECK(same(after, other(x)));
}

namespace {

/// max_i |a_i - r_i| / max_i |r_i| (normwise) and ||a - r||_2 / ||r||_2 (Frobenius).
std::pair<double, double> rel_errors(const std::vector<float>& a, const std::vector<double>& r) {
  double max_err = 0, max_ref = 0, sum_err = 0, sum_ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - r[i];
    max_err = std::max(max_err, std::fabs(d));
    max_ref = std::max(max_ref, std::fabs(r[i]));
    sum_err += d * d;
    sum_ref += r[i] * r[i];
  }
  return {max_err / max_ref, std::sqrt(sum_err / sum_ref)};
}

}  // namespace

// Hidden (run with `build/tests/minidl_tests "[.precision]"`, about 7 s): how far float32
// Winograd F(m x m, 3 x 3) and float32 im2col + GEMM are from the same convolution accumulated in
// double, on the five 3x3 convolutions of airbench94 (padding 1, 64 images: x = GELU of a
// standard normal like a block's input, Kaiming-normal weights, dy normal). It measures what
// docs/airbench94/README.md cites when it asks whether the Winograd arithmetic costs accuracy.
// Both errors are printed (WARN); the check is the oracle's 1e-4 for Winograd and 1e-5 for GEMM.
TEST_CASE("Winograd and im2col + GEMM against double on airbench94's convolutions",
          "[.precision]") {
  struct Shape4 {
    int64_t N, C, O, H;
  };
  const Shape4 shapes[] = {
      {64, 24, 64, 31}, {64, 64, 64, 15}, {64, 64, 256, 15}, {64, 256, 256, 7}, {64, 256, 256, 3}};
  Generator gen(11);
  for (const Shape4& s : shapes) {
    const int64_t N = s.N, C = s.C, O = s.O, H = s.H, P = H * H, K = C * 9;
    const kernels::ConvGeom g{C, H, H, 3, 3, 1, 1, H, H};
    REQUIRE(kernels::winograd_applies(g));
    std::vector<float> x(N * C * P), w(O * K), dy(N * O * P);
    for (float& v : x) {
      const float z = gen.normal();
      v = 0.5f * z * std::erfc(-z / std::sqrt(2.0f));
    }
    for (float& v : w) v = gen.normal() * std::sqrt(2.0f / K);
    for (float& v : dy) v = gen.normal() * 1e-3f;
    // The definitions in double: y = conv(x, w), dw = d sum(y * dy) / dw.
    std::vector<double> y_ref(dy.size(), 0.0), dw_ref(w.size(), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t kh = 0; kh < 3; ++kh)
            for (int64_t kw = 0; kw < 3; ++kw) {
              const double wv = w[(o * C + c) * 9 + kh * 3 + kw];
              double acc = 0.0;
              for (int64_t i = std::max<int64_t>(0, 1 - kh); i < std::min(H, H + 1 - kh); ++i)
                for (int64_t j = std::max<int64_t>(0, 1 - kw); j < std::min(H, H + 1 - kw); ++j) {
                  const double xv = x[(n * C + c) * P + (i - 1 + kh) * H + (j - 1 + kw)];
                  const int64_t yi = (n * O + o) * P + i * H + j;
                  y_ref[yi] += wv * xv;
                  acc += xv * dy[yi];
                }
              dw_ref[(o * C + c) * 9 + kh * 3 + kw] += acc;
            }
    std::vector<float> V(kernels::winograd_weight_size(O, C)), y_wino(dy.size()),
        dw_wino(w.size(), 0.0f);
    kernels::winograd_weight_transform(w.data(), O, C, false, V.data());
    kernels::winograd_forward(x.data(), N, g, O, V.data(), y_wino.data(), false);
    kernels::winograd_backward_weight(x.data(), dy.data(), N, g, O, dw_wino.data());
    std::vector<float> col(K * P), y_gemm(dy.size()), dw_gemm(w.size(), 0.0f);
    for (int64_t n = 0; n < N; ++n) {
      kernels::im2col(x.data() + n * C * P, g, col.data());
      kernels::gemm(false, false, O, P, K, 1.0f, w.data(), col.data(), 0.0f,
                    y_gemm.data() + n * O * P);
      kernels::gemm(false, true, O, K, P, 1.0f, dy.data() + n * O * P, col.data(), 1.0f,
                    dw_gemm.data());
    }
    const auto yw = rel_errors(y_wino, y_ref), yg = rel_errors(y_gemm, y_ref);
    const auto dww = rel_errors(dw_wino, dw_ref), dwg = rel_errors(dw_gemm, dw_ref);
    WARN("x [" << N << ", " << C << ", " << H << ", " << H << "] -> " << O
               << " channels, relative error (normwise / Frobenius): y Winograd F("
               << kernels::kWinogradTile << ") " << yw.first << " / " << yw.second << ", GEMM "
               << yg.first << " / " << yg.second << "; dw Winograd " << dww.first << " / "
               << dww.second << ", GEMM " << dwg.first << " / " << dwg.second);
    CHECK(yw.first < 1e-4);
    CHECK(dww.first < 1e-4);
    CHECK(yg.first < 1e-5);
    CHECK(dwg.first < 1e-5);
  }
}
