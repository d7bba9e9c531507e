// Winograd convolution: the cached transformed weight is reused while the weight is unchanged
// and recomputed after every change (an optimizer step, load_state_dict, a write through
// mutable_data()); reads (data(), vec(), even through a non-const handle) leave it valid.
// Correctness against a naive convolution is tests/test_conv_oracle.cpp.
#include <algorithm>

#include <catch2/catch.hpp>

#include "core/autograd.hpp"
#include "core/ops.hpp"
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

TEST_CASE("Winograd: a write through mutable_data() invalidates the cached transform",
          "[winograd]") {
  Generator g(22);
  Tensor x = randn({2, 16, 8, 8}, g);
  Tensor w = randn({8, 16, 3, 3}, g, 0.1f);
  NoGradGuard ng;
  Tensor before = ops::conv2d(x, w, Tensor(), 1, 1);
  w.mutable_data()[5] += 1.0f;  // write access bumps the version
  Tensor after = ops::conv2d(x, w, Tensor(), 1, 1);
  CHECK_FALSE(same(before, after));
  CHECK(same(after, reference(x, w)));
}

TEST_CASE(
    "Winograd: reading a weight through a non-const handle keeps the cached transform, "
    "writing through mutable_data() drops it",
    "[winograd]") {
  Generator g(25);
  Tensor x = randn({2, 16, 8, 8}, g);
  Tensor w = randn({8, 16, 3, 3}, g, 0.1f);  // non-const: data() and vec() are still reads
  NoGradGuard ng;
  const Tensor y = ops::conv2d(x, w, Tensor(), 1, 1);
  REQUIRE(forward_cache(w) != nullptr);
  const uint64_t version = w.impl()->version;
  // Reads, as a probe or a checkpoint writer would make them.
  double sum = 0.0;
  const float* p = w.data();
  for (int64_t i = 0; i < w.numel(); ++i) sum += p[i];
  for (float v : w.vec()) sum -= v;
  CHECK(sum == 0.0);
  const Tensor copy = w.clone();
  CHECK(w.impl()->version == version);
  // Poison the cached transform: a conv2d that uses the cache (instead of recomputing it from
  // the weight) now computes zeros.
  for (DerivedCache& d : w.impl()->derived) std::fill(d.data.begin(), d.data.end(), 0.0f);
  const Tensor poisoned = ops::conv2d(x, w, Tensor(), 1, 1);
  CHECK(
      std::all_of(poisoned.vec().begin(), poisoned.vec().end(), [](float v) { return v == 0.0f; }));
  // A write through mutable_data() (here of the same value) bumps the version: the transform is
  // recomputed from the weight, and conv2d is right again.
  const float w0 = w.data()[0];
  w.mutable_data()[0] = w0;
  CHECK(w.impl()->version == version + 1);
  CHECK(same(ops::conv2d(x, w, Tensor(), 1, 1), y));
  CHECK(forward_cache(w)->version == version + 1);
  CHECK(same(y, reference(x, copy)));
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
