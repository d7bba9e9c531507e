// Ghost batch normalization (BatchNorm::group_size; Hoffer, Hubara & Soudry 2017): statistics per
// group of G consecutive images equal one BatchNorm applied to each slice in sequence
// (PyTorch's equivalent: a BatchNorm2d called on x[0:G], x[G:2G], ..., then torch.cat).
#include <catch2/catch.hpp>
#include <vector>

#include "core/random.hpp"
#include "layers/batch_norm.hpp"

using namespace minidl;

namespace {
/// Images [lo, hi) of t [N, ...] as a new leaf tensor.
Tensor rows(const Tensor& t, int64_t lo, int64_t hi) {
  Shape s = t.shape();
  const int64_t per = t.numel() / s[0];
  s[0] = hi - lo;
  return Tensor(s, std::vector<float>(t.data() + lo * per, t.data() + hi * per));
}
}  // namespace

TEST_CASE("ghost BatchNorm equals BatchNorm over each slice in turn, bit for bit", "[bn][ghost]") {
  Generator gen(8);
  const int64_t N = 10, C = 3, H = 4, W = 5, G = 4;  // groups of 4, 4 and 2 images
  Tensor x({N, C, H, W}), r({N, C, H, W}), dy({N, C, H, W});
  for (Tensor* t : {&x, &r, &dy})
    for (float& v : t->mutable_vec()) v = 1.5f + 2.0f * gen.normal();
  for (int mode = 0; mode < 3; ++mode) {  // plain, fused ReLU, fused residual + ReLU
    INFO("mode " << mode);
    BatchNorm2d ghost(BatchNormOptions(C).momentum(0.3f)), ref(BatchNormOptions(C).momentum(0.3f));
    for (float& v : ghost.weight.mutable_vec()) v = 0.5f + gen.uniform();
    for (float& v : ghost.bias.mutable_vec()) v = gen.normal();
    ref.weight.copy_(ghost.weight);
    ref.bias.copy_(ghost.bias);
    ghost.group_size = G;
    auto apply = [mode](BatchNorm2d& bn, const Tensor& xi, const Tensor& ri) {
      return mode == 0 ? bn(xi) : mode == 1 ? bn.forward_relu(xi) : bn.forward_add_relu(xi, ri);
    };
    Tensor xg = x.clone(), rg = r.clone();
    xg.set_requires_grad(true);
    rg.set_requires_grad(true);
    Tensor yg = apply(ghost, xg, rg);
    yg.backward(dy);
    const Tensor dxg = xg.grad(), drg = rg.grad();
    for (int64_t n0 = 0; n0 < N; n0 += G) {
      const int64_t n1 = std::min(N, n0 + G), per = C * H * W;
      Tensor xs = rows(x, n0, n1), rs = rows(r, n0, n1);
      xs.set_requires_grad(true);
      rs.set_requires_grad(true);
      Tensor ys = apply(ref, xs, rs);
      ys.backward(rows(dy, n0, n1));
      const Tensor dxs = xs.grad();
      CHECK(std::vector<float>(ys.data(), ys.data() + ys.numel()) ==
            std::vector<float>(yg.data() + n0 * per, yg.data() + n1 * per));
      CHECK(std::vector<float>(dxs.data(), dxs.data() + dxs.numel()) ==
            std::vector<float>(dxg.data() + n0 * per, dxg.data() + n1 * per));
      if (mode == 2) {
        const Tensor drs = rs.grad();
        CHECK(std::vector<float>(drs.data(), drs.data() + drs.numel()) ==
              std::vector<float>(drg.data() + n0 * per, drg.data() + n1 * per));
      }
    }
    // The parameter gradients sum over the groups; the running statistics moved group by group.
    CHECK(ghost.weight.grad().vec() == ref.weight.grad().vec());
    CHECK(ghost.bias.grad().vec() == ref.bias.grad().vec());
    CHECK(ghost.running_mean.vec() == ref.running_mean.vec());
    CHECK(ghost.running_var.vec() == ref.running_var.vec());
    // ... and differ from one BatchNorm over the whole batch.
    BatchNorm2d whole(BatchNormOptions(C).momentum(0.3f));
    whole(x.clone());
    CHECK(whole.running_var.vec() != ghost.running_var.vec());
  }
}

TEST_CASE("ghost BatchNorm: eval mode ignores groups, and a last group of one value is refused",
          "[bn][ghost]") {
  Generator gen(9);
  Tensor x({5, 2, 1, 1});
  for (float& v : x.mutable_vec()) v = gen.normal();
  BatchNorm2d bn(2);
  bn.group_size = 2;  // groups of 2, 2 and 1 image(s) of 1 value each
  CHECK_THROWS_WITH(bn(x), Catch::Contains("group_size 2") && Catch::Contains("last group of 1"));
  bn.eval();
  BatchNorm2d plain(2);
  plain.eval();
  CHECK(bn(x).vec() == plain(x).vec());
}
