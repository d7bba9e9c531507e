// Finite-difference gradient checks of every op (STYLE: every layer has a live gradient check).
#include "core/autograd.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "gradcheck.hpp"

using namespace minidl;
using minidl::testing::gradcheck;
using minidl::testing::randn;

TEST_CASE("gradcheck linear", "[gradcheck]") {
  Generator g(1);
  gradcheck(
      [](const std::vector<Tensor>& t) { return ops::linear(t[0], t[1], t[2]); },
      {randn({4, 5}, g, 1, 0, true), randn({3, 5}, g, 1, 0, true), randn({3}, g, 1, 0, true)});
}

TEST_CASE("gradcheck conv2d", "[gradcheck]") {
  struct Case {
    Shape x, w;
    bool bias;
    int64_t stride, padding;
  };
  for (const Case& c :
       {Case{{2, 3, 6, 6}, {4, 3, 3, 3}, true, 1, 1}, Case{{2, 3, 7, 7}, {4, 3, 3, 3}, false, 2, 1},
        Case{{2, 4, 6, 6}, {5, 4, 1, 1}, false, 2, 0}, Case{{1, 2, 5, 5}, {3, 2, 1, 1}, true, 1, 0},
        Case{{1, 2, 6, 5}, {2, 2, 5, 5}, false, 1, 2},
        // >= 32 channels: the untransposed GEMM paths (conv.cpp, kNarrow)
        Case{{2, 32, 4, 4}, {33, 32, 3, 3}, true, 1, 1},
        Case{{2, 40, 5, 5}, {32, 40, 3, 3}, false, 2, 1},
        // 3x3 stride 1, >= 8 input channels: Winograd F(4x4, 3x3), padding 0-2
        Case{{3, 8, 7, 6}, {5, 8, 3, 3}, true, 1, 0},
        Case{{2, 9, 5, 9}, {4, 9, 3, 3}, false, 1, 2}}) {
    Generator g(2);
    INFO("x " << shape_str(c.x) << " w " << shape_str(c.w) << " stride " << c.stride);
    gradcheck(
        [&](const std::vector<Tensor>& t) {
          return ops::conv2d(t[0], t[1], t[2], c.stride, c.padding);
        },
        {randn(c.x, g, 1, 0, true), randn(c.w, g, 0.5, 0, true),
         c.bias ? randn({c.w[0]}, g, 1, 0, true) : Tensor()},
        // conv2d is linear in each input, so central differences are exact for any step; a
        // large step keeps float rounding (Winograd's is ~1e-6 of |y|) out of the difference.
        /*h=*/1.0);
  }
}

TEST_CASE("gradcheck batch_norm train and eval, 1d and 2d", "[gradcheck]") {
  for (bool training : {true, false}) {
    for (const Shape& xs : {Shape{6, 3}, Shape{3, 2, 4, 4}}) {
      Generator g(3);
      const int64_t C = xs[1];
      Tensor rm = randn({C}, g, 0.3f), rv = randn({C}, g, 0.1f, 1.0f);
      INFO("training " << training << " x " << shape_str(xs));
      // Running stats are updated in training; give each evaluation fresh copies so that every
      // call of f computes the same function.
      gradcheck(
          [&](const std::vector<Tensor>& t) {
            return ops::batch_norm(t[0], t[1], t[2], rm.clone(), rv.clone(), training, 0.1f, 1e-5f);
          },
          {randn(xs, g, 2, 0.5, true), randn({C}, g, 0.5, 1, true), randn({C}, g, 1, 0, true)},
          1e-2, 3e-2, 3e-3);
    }
  }
}

TEST_CASE("batch_norm_relu equals relu(batch_norm) with the same gradients", "[gradcheck]") {
  for (bool training : {true, false}) {
    Generator g(13);
    Tensor x = randn({3, 4, 5, 5}, g, 2, 0.3f, true), w = randn({4}, g, 0.5, 1, true);
    Tensor b = randn({4}, g, 1, 0, true), rm = randn({4}, g, 0.3f), rv = randn({4}, g, 0.1f, 1);
    Tensor dy = randn({3, 4, 5, 5}, g);
    Tensor fused = ops::batch_norm_relu(x, w, b, rm.clone(), rv.clone(), training, 0.1f, 1e-5f);
    fused.backward(dy);
    const std::vector<float> gx(x.grad_data(), x.grad_data() + x.numel());
    const std::vector<float> gw(w.grad_data(), w.grad_data() + 4),
        gb(b.grad_data(), b.grad_data() + 4);
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    Tensor plain =
        ops::relu(ops::batch_norm(x, w, b, rm.clone(), rv.clone(), training, 0.1f, 1e-5f));
    plain.backward(dy);
    INFO("training " << training);
    for (int64_t i = 0; i < x.numel(); ++i) {
      CHECK(fused.data()[i] == Approx(plain.data()[i]).margin(1e-6));
      CHECK(gx[i] == Approx(x.grad_data()[i]).margin(1e-5));
    }
    for (int64_t c = 0; c < 4; ++c) {
      CHECK(gw[c] == Approx(w.grad_data()[c]).margin(1e-5));
      CHECK(gb[c] == Approx(b.grad_data()[c]).margin(1e-5));
    }
  }
}

TEST_CASE("gradcheck batch_norm_add_relu and its agreement with the unfused ops", "[gradcheck]") {
  Generator g(14);
  Tensor rm = randn({3}, g, 0.3f), rv = randn({3}, g, 0.1f, 1);
  Tensor x0 = randn({3, 3, 4, 4}, g, 2, 0.5, true), w0 = randn({3}, g, 0.5, 1, true);
  Tensor b0 = randn({3}, g, 1, 0, true), r0 = randn({3, 3, 4, 4}, g, 1, 0, true);
  {  // keep every output 0.05 away from ReLU's kink, where central differences are invalid
    NoGradGuard ng;
    Tensor y0 = ops::batch_norm(x0, w0, b0, rm.clone(), rv.clone(), true, 0.1f, 1e-5f);
    for (int64_t i = 0; i < y0.numel(); ++i) {
      const float s = y0.data()[i] + r0.data()[i];
      if (std::abs(s) < 0.05f) r0.mutable_data()[i] += s >= 0 ? 0.1f : -0.1f;
    }
  }
  gradcheck(
      [&](const std::vector<Tensor>& t) {
        return ops::batch_norm_add_relu(t[0], t[1], t[2], rm.clone(), rv.clone(), true, 0.1f, 1e-5f,
                                        t[3]);
      },
      {x0, w0, b0, r0}, 1e-3, 3e-2, 1e-3);
  Tensor x = randn({2, 3, 4, 4}, g), r = randn({2, 3, 4, 4}, g), w = randn({3}, g, 0.5, 1);
  Tensor fused =
      ops::batch_norm_add_relu(x, w, Tensor(), rm.clone(), rv.clone(), false, 0.1f, 1e-5f, r);
  Tensor plain =
      ops::add_relu(ops::batch_norm(x, w, Tensor(), rm.clone(), rv.clone(), false, 0.1f, 1e-5f), r);
  for (int64_t i = 0; i < x.numel(); ++i)
    CHECK(fused.data()[i] == Approx(plain.data()[i]).margin(1e-6));
}

TEST_CASE("gradcheck relu, add, add_relu, reshape, flatten", "[gradcheck]") {
  Generator g(4);
  // Inputs kept away from the kink at 0 so central differences are valid.
  auto away = [&](Shape s) {
    Tensor t = randn(s, g, 1, 0, true);
    for (float& v : t.mutable_vec()) v = v >= 0 ? v + 0.1f : v - 0.1f;
    return t;
  };
  gradcheck([](const std::vector<Tensor>& t) { return ops::relu(t[0]); }, {away({2, 3, 4})});
  gradcheck([](const std::vector<Tensor>& t) { return ops::add(t[0], t[1]); },
            {randn({2, 5}, g, 1, 0, true), randn({2, 5}, g, 1, 0, true)});
  Tensor a = away({2, 3, 3}), b = randn({2, 3, 3}, g, 0.01f, 0, true);
  gradcheck([](const std::vector<Tensor>& t) { return ops::add_relu(t[0], t[1]); }, {a, b});
  gradcheck(
      [](const std::vector<Tensor>& t) {
        return ops::reshape(t[0], {6, 4});
      },
      {randn({2, 3, 4}, g, 1, 0, true)});
  gradcheck([](const std::vector<Tensor>& t) { return ops::flatten(t[0]); },
            {randn({2, 3, 2, 2}, g, 1, 0, true)});
}

TEST_CASE("gradcheck gelu, and its values at a few points", "[gradcheck]") {
  Generator g(5);
  gradcheck([](const std::vector<Tensor>& t) { return ops::gelu(t[0]); },
            {randn({2, 3, 5}, g, 2.0f, 0.0f, true)}, /*h=*/1e-2, /*rtol=*/1e-2, /*atol=*/1e-3);
  // x Phi(x): Phi(0) = 0.5, Phi(1) = 0.841344746, Phi(-3) = 0.001349898.
  Tensor y = ops::gelu(Tensor({3}, {0.0f, 1.0f, -3.0f}));
  CHECK(y.data()[0] == 0.0f);
  CHECK(y.data()[1] == Approx(0.841344746).epsilon(1e-6));
  CHECK(y.data()[2] == Approx(-3.0 * 0.001349898).epsilon(1e-5));
}

TEST_CASE("the vectorized gelu kernels agree with the double-precision reference",
          "[gradcheck][gelu]") {
  // Every 1/256 from -16 to 16 (the whole range where x Phi(x) is a normal float and beyond),
  // plus random values; relative error below 1e-6 (a few float ulps), also in the far negative
  // tail where Phi(x) is tiny.
  std::vector<float> x;
  for (int i = -16 * 256; i <= 16 * 256; ++i) x.push_back(i / 256.0f);
  Generator g(9);
  for (int i = 0; i < 4096; ++i) x.push_back(3.0f * g.normal());
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> fast(n), ref(n), dy(n), dfast(n, 0.0f), dref(n, 0.0f);
  for (float& v : dy) v = g.normal();
  kernels::gelu(fast.data(), x.data(), n);
  kernels::gelu_reference(ref.data(), x.data(), n);
  kernels::gelu_backward_add(dfast.data(), dy.data(), x.data(), n);
  kernels::gelu_backward_add_reference(dref.data(), dy.data(), x.data(), n);
  double worst_y = 0, worst_dx = 0;
  for (int64_t i = 0; i < n; ++i) {
    INFO("x = " << x[i]);
    REQUIRE(std::fabs(fast[i] - ref[i]) <= 1e-6 * std::fabs(ref[i]) + 1e-30);
    // dx = dy GELU'(x), GELU' in [-0.17, 1.13]: error relative to dy.
    const double err_dx = std::fabs(double(dfast[i]) - dref[i]) / std::fabs(dy[i]);
    REQUIRE(err_dx <= 2e-6);
    if (std::fabs(ref[i]) > 1e-30)  // below, float underflows to 0 (and denormals)
      worst_y = std::max(worst_y, std::fabs(double(fast[i]) - ref[i]) / std::fabs(ref[i]));
    worst_dx = std::max(worst_dx, err_dx);
  }
  CHECK(worst_y < 1e-6);
  CHECK(worst_dx < 2e-6);
}

TEST_CASE("max_pool2d's kernel-2 stride-2 fast path equals a naive loop, ties and NaN included",
          "[gradcheck][pool]") {
  // Odd and even sizes (31 -> 15 drops the last row and column), values from a small set so
  // that windows hold ties, and a few NaNs. Naive: the window's max in (kh, kw) order, the
  // first on ties, NaN wins; the gradient goes to that element.
  Generator g(21);
  for (int64_t side : {2, 6, 31}) {
    Tensor x({2, 3, side, side}, true);
    for (float& v : x.mutable_vec()) v = std::floor(4.0f * g.uniform());
    x.mutable_vec()[5] = NAN;
    x.mutable_vec()[x.numel() - 3] = NAN;
    Tensor y = ops::max_pool2d(x, 2, 2, 0);
    const int64_t HO = side / 2;
    REQUIRE(y.shape() == Shape{2, 3, HO, HO});
    Tensor dy({2, 3, HO, HO});
    for (float& v : dy.mutable_vec()) v = g.normal();
    y.backward(dy);
    std::vector<float> want_dx(static_cast<size_t>(x.numel()), 0.0f);
    for (int64_t nc = 0; nc < 6; ++nc) {
      for (int64_t oh = 0; oh < HO; ++oh) {
        for (int64_t ow = 0; ow < HO; ++ow) {
          int64_t arg = -1;
          float best = 0.0f;
          for (int64_t kh = 0; kh < 2; ++kh) {
            for (int64_t kw = 0; kw < 2; ++kw) {
              const int64_t i = nc * side * side + (2 * oh + kh) * side + 2 * ow + kw;
              const float v = x.data()[i];
              if (arg < 0 || v > best || std::isnan(v)) {
                best = v;
                arg = i;
              }
            }
          }
          const int64_t o = (nc * HO + oh) * HO + ow;
          const float got = y.data()[o];
          REQUIRE((got == best || (std::isnan(got) && std::isnan(best))));
          want_dx[static_cast<size_t>(arg)] += dy.data()[o];
        }
      }
    }
    const Tensor dx = x.grad();
    for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(dx.data()[i] == want_dx[i]);
  }
}

TEST_CASE("gradcheck scale, and its values", "[gradcheck]") {
  Generator g(6);
  gradcheck([](const std::vector<Tensor>& t) { return ops::scale(t[0], -1.0f / 9.0f); },
            {randn({2, 3, 5}, g, 2.0f, 0.0f, true)});
  Tensor y = ops::scale(Tensor({3}, {9.0f, -4.5f, 0.0f}), 1.0f / 9.0f);
  CHECK(y.data()[0] == 1.0f);
  CHECK(y.data()[1] == -0.5f);
  CHECK(y.data()[2] == 0.0f);
}

TEST_CASE("gradcheck max_pool2d and global_avg_pool2d", "[gradcheck]") {
  Generator g(5);
  // Distinct values (a shuffled ramp) so the argmax is stable under +-h.
  auto ramp = [&](Shape s) {
    Tensor t(s, true);
    float* d = t.mutable_data();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = 0.05f * static_cast<float>(i);
    for (int64_t i = t.numel() - 1; i > 0; --i) std::swap(d[i], d[g.randint(i + 1)]);
    return t;
  };
  gradcheck([](const std::vector<Tensor>& t) { return ops::max_pool2d(t[0], 2, 2, 0); },
            {ramp({2, 2, 6, 6})}, 1e-3);
  gradcheck([](const std::vector<Tensor>& t) { return ops::max_pool2d(t[0], 3, 2, 1); },
            {ramp({1, 2, 7, 7})}, 1e-3);
  gradcheck([](const std::vector<Tensor>& t) { return ops::global_avg_pool2d(t[0]); },
            {randn({2, 3, 4, 4}, g, 1, 0, true)});
}

TEST_CASE("gradcheck cross_entropy with and without label smoothing", "[gradcheck]") {
  Generator g(6);
  for (float ls : {0.0f, 0.1f}) {
    gradcheck(
        [ls](const std::vector<Tensor>& t) {
          return ops::cross_entropy(t[0], {1, 0, 3, 2, 3}, ls);
        },
        {randn({5, 4}, g, 2, 0, true)}, 1e-2, 1e-2, 1e-4);
  }
}

TEST_CASE("gradcheck a composed graph: conv - bn - relu - pool - linear - loss", "[gradcheck]") {
  Generator g(7);
  Tensor rm({3}), rv = Tensor::full({3}, 1.0f);
  gradcheck(
      [&](const std::vector<Tensor>& t) {
        Tensor h = ops::conv2d(t[0], t[1], Tensor(), 1, 1);
        h = ops::relu(ops::batch_norm(h, t[2], t[3], rm.clone(), rv.clone(), true, 0.1f, 1e-5f));
        h = ops::global_avg_pool2d(h);
        return ops::cross_entropy(ops::linear(h, t[4], Tensor()), {0, 2, 1, 1});
      },
      {randn({4, 2, 5, 5}, g, 1, 0, true), randn({3, 2, 3, 3}, g, 0.5, 0, true),
       randn({3}, g, 0.2f, 1, true), randn({3}, g, 0.5, 0, true), randn({3, 3}, g, 1, 0, true)},
      1e-3, 3e-2, 1e-3);  // small h: ReLU kinks lie close to some inputs
}

TEST_CASE("frozen parameters receive no gradient and no-grad mode records nothing", "[autograd]") {
  Generator g(8);
  Tensor x = randn({2, 3, 5, 5}, g), w = randn({4, 3, 3, 3}, g);  // neither requires grad
  Tensor b = randn({4}, g, 1, 0, true);
  Tensor y = ops::conv2d(x, w, b, 1, 1);
  REQUIRE(y.requires_grad());
  y.backward(Tensor::full(y.shape(), 1.0f));
  CHECK_FALSE(w.has_grad());
  CHECK_FALSE(x.has_grad());
  REQUIRE(b.has_grad());
  CHECK(b.grad().data()[0] == Approx(2 * 25));  // sum of ones over N, H, W
  {
    NoGradGuard ng;
    Tensor z = ops::conv2d(x, w, b, 1, 1);
    CHECK_FALSE(z.requires_grad());
    CHECK_THROWS_AS(z.backward(Tensor::full(z.shape(), 1.0f)), std::logic_error);
  }
}

TEST_CASE("gradients accumulate across backward calls until zero_grad", "[autograd]") {
  Generator g(9);
  Tensor x = randn({3, 4}, g), w = randn({2, 4}, g, 1, 0, true);
  for (int i = 0; i < 2; ++i) ops::cross_entropy(ops::linear(x, w, Tensor()), {0, 1, 1}).backward();
  std::vector<float> twice(w.grad_data(), w.grad_data() + w.numel());
  w.zero_grad();
  ops::cross_entropy(ops::linear(x, w, Tensor()), {0, 1, 1}).backward();
  for (int64_t i = 0; i < w.numel(); ++i) CHECK(twice[i] == Approx(2 * w.grad_data()[i]));
  // conv2d and the BN ops assign a fresh gradient and add to an existing one (a ResNet block's
  // input gets both conv1's and the shortcut's contribution).
  Tensor img = randn({2, 3, 6, 6}, g, 1, 0, true), k = randn({4, 3, 3, 3}, g);
  Tensor dy = randn({2, 4, 6, 6}, g), rm({3}), rv = Tensor::full({3}, 1.0f);
  auto grads_after = [&](int calls, bool bn) {
    img.zero_grad();
    for (int i = 0; i < calls; ++i) {
      if (bn) {
        Tensor y =
            ops::batch_norm_add_relu(img, Tensor(), Tensor(), rm, rv, true, 0.1f, 1e-5f, img);
        y.backward(randn({2, 3, 6, 6}, g = Generator(5)));
      } else {
        ops::conv2d(img, k, Tensor(), 1, 1).backward(dy);
      }
    }
    return std::vector<float>(img.grad_data(), img.grad_data() + img.numel());
  };
  for (bool bn : {false, true}) {
    const auto once = grads_after(1, bn), two = grads_after(2, bn);
    INFO((bn ? "batch_norm_add_relu (x and residual are one tensor)" : "conv2d"));
    for (size_t i = 0; i < once.size(); ++i) CHECK(two[i] == Approx(2 * once[i]).margin(1e-6));
  }
}
