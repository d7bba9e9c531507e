// Partition-independent BatchNorm statistics (BatchNorm::exact_statistics, `--bn-sync exact`) on
// one process: the same batch normalization as plain BatchNorm (to float32 rounding: the sums are
// grouped image by image), with exact gradients. That it gives the same bits however the batch
// is split over processes is tested under MPI (tests/mpi/test_sync_bn.cpp).
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "core/random.hpp"
#include "gradcheck.hpp"
#include "layers/batch_norm.hpp"

using namespace minidl;
using minidl::testing::gradcheck;
using minidl::testing::randn;

namespace {
/// max |a - b| / max |b|.
double rel_err(const Tensor& a, const Tensor& b) {
  double err = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    err = std::max(err, std::fabs(double(a.data()[i]) - b.data()[i]));
    scale = std::max(scale, std::fabs(double(b.data()[i])));
  }
  return scale > 0 ? err / scale : err;
}
}  // namespace

TEST_CASE("exact BatchNorm statistics equal BatchNorm's on one process, to 1e-6", "[bn][exact]") {
  Generator gen(12);
  const int64_t N = 6, C = 3, H = 5, W = 4;
  Tensor x({N, C, H, W}), r({N, C, H, W}), dy({N, C, H, W});
  for (float& v : x.mutable_vec()) v = 3.0f + gen.normal();
  for (Tensor* t : {&r, &dy})
    for (float& v : t->mutable_vec()) v = gen.normal();
  for (int mode = 0; mode < 3; ++mode) {  // plain, fused ReLU, fused residual + ReLU
    INFO("mode " << mode);
    BatchNorm2d exact(BatchNormOptions(C).momentum(0.3f)), ref(BatchNormOptions(C).momentum(0.3f));
    for (float& v : exact.weight.mutable_vec()) v = 0.5f + gen.uniform();
    for (float& v : exact.bias.mutable_vec()) v = gen.normal();
    ref.weight.copy_(exact.weight);
    ref.bias.copy_(exact.bias);
    exact.exact_statistics = true;
    auto apply = [mode](BatchNorm2d& bn, const Tensor& xi, const Tensor& ri) {
      return mode == 0 ? bn(xi) : mode == 1 ? bn.forward_relu(xi) : bn.forward_add_relu(xi, ri);
    };
    Tensor xe = x.clone(), re = r.clone(), xr = x.clone(), rr = r.clone();
    for (Tensor* t : {&xe, &re, &xr, &rr}) t->set_requires_grad(true);
    Tensor ye = apply(exact, xe, re), yr = apply(ref, xr, rr);
    ye.backward(dy);
    yr.backward(dy);
    CHECK(rel_err(ye, yr) < 1e-6);
    CHECK(rel_err(xe.grad(), xr.grad()) < 1e-6);
    if (mode == 2) CHECK(rel_err(re.grad(), rr.grad()) < 1e-6);
    CHECK(rel_err(exact.weight.grad(), ref.weight.grad()) < 1e-6);
    CHECK(rel_err(exact.bias.grad(), ref.bias.grad()) < 1e-6);
    CHECK(rel_err(exact.running_mean, ref.running_mean) < 1e-6);
    CHECK(rel_err(exact.running_var, ref.running_var) < 1e-6);
    // ... and it normalized with the batch: the running mean moved 0.3 of the way to ~3.
    CHECK(exact.running_mean.data()[0] == Approx(0.9).margin(0.15));
  }
}

TEST_CASE("exact BatchNorm statistics stay accurate when the mean dwarfs the spread",
          "[bn][exact]") {
  // |mean| / std = 1e5: one sum of squares around 0 would lose the variance in float32; each
  // image's sums run around its own first value, and the merge is in double.
  Generator gen(14);
  const int64_t N = 8, C = 2, S = 25;
  Tensor x({N, C, 5, 5});
  for (float& v : x.mutable_vec()) v = 1000.0f + 0.01f * gen.normal();
  BatchNorm2d bn(BatchNormOptions(C).momentum(1.0f));  // running = this batch's statistics
  bn.exact_statistics = true;
  bn(x);
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) sum += x.data()[(n * C + c) * S + i];
    const double mean = sum / (N * S);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) sq += std::pow(x.data()[(n * C + c) * S + i] - mean, 2);
    CHECK(bn.running_mean.data()[c] == Approx(mean).epsilon(1e-7));
    CHECK(bn.running_var.data()[c] == Approx(sq / (N * S - 1)).epsilon(1e-5));  // unbiased
  }
}

TEST_CASE("gradcheck BatchNorm with exact statistics", "[bn][exact][gradcheck]") {
  Generator gen(13);
  BatchNorm2d bn(BatchNormOptions(3));
  bn.exact_statistics = true;
  for (float& v : bn.weight.mutable_vec()) v = 0.5f + gen.uniform();
  for (float& v : bn.bias.mutable_vec()) v = gen.normal();
  Tensor x = randn({4, 3, 3, 2}, gen, 1.0f, 0.5f);
  x.set_requires_grad(true);
  gradcheck([&bn](const std::vector<Tensor>& t) { return bn(t[0]); }, {x, bn.weight, bn.bias}, 1e-2,
            2e-2, 2e-3);
}

TEST_CASE("exact BatchNorm statistics refuse a single value per channel, and skip eval mode",
          "[bn][exact]") {
  BatchNorm2d bn(2);
  bn.exact_statistics = true;
  Tensor one({1, 2, 1, 1}, {1.0f, 2.0f});
  CHECK_THROWS_WITH(bn(one), Catch::Contains("more than 1 value per channel"));
  bn.eval();
  const Tensor y = bn(one);  // running statistics (0, 1): y = x / sqrt(1 + eps)
  CHECK(y.data()[1] == Approx(2.0f / std::sqrt(1.0f + 1e-5f)));
}
