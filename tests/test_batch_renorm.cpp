// Batch Renormalization (BatchNorm::renorm; Ioffe 2017, "Batch Renormalization: Towards Reducing
// Minibatch Dependence in Batch-Normalized Models", Algorithm 1). There is no PyTorch module for
// it, so the reference is written here from the paper's equations, in double: the forward
// directly, the gradients by central differences of that forward with r and d held constant
// (the paper's stop_gradient). minidl's float32 op must match both to 1e-6.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "core/random.hpp"
#include "layers/batch_norm.hpp"
#include <nlohmann/json.hpp>

#include "train/run_dir.hpp"

using namespace minidl;

namespace {

/// Algorithm 1 on x [N, C, S] (double), one slice: y = max(gamma x_hat + beta + res, 0) when
/// relu (res may be empty), x_hat = (x - mu_B) / sigma_B * r + d. r and d come from the running
/// statistics (mean, var) unless `fixed_r`/`fixed_d` are given; the running statistics are then
/// updated with `momentum` (running_var from the unbiased variance, as BatchNorm's buffers).
struct Reference {
  int64_t N, C, S;
  double eps = 1e-5, momentum = 0.1, r_max, d_max;
  bool relu;
  std::vector<double> gamma, beta;

  std::vector<double> forward(const std::vector<double>& x, const std::vector<double>& res,
                              std::vector<double>& mean, std::vector<double>& var,
                              std::vector<double>* r_out, std::vector<double>* d_out,
                              const std::vector<double>* fixed_r,
                              const std::vector<double>* fixed_d) const {
    std::vector<double> y(x.size());
    for (int64_t c = 0; c < C; ++c) {
      double mu = 0, v = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) mu += x[(n * C + c) * S + i];
      mu /= double(N * S);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) v += std::pow(x[(n * C + c) * S + i] - mu, 2);
      v /= double(N * S);  // biased
      const double sigma_b = std::sqrt(v + eps), sigma = std::sqrt(var[c] + eps);
      const double r =
          fixed_r ? (*fixed_r)[c] : std::min(std::max(sigma_b / sigma, 1.0 / r_max), r_max);
      const double d =
          fixed_d ? (*fixed_d)[c] : std::min(std::max((mu - mean[c]) / sigma, -d_max), d_max);
      if (r_out) (*r_out)[c] = r;
      if (d_out) (*d_out)[c] = d;
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t i = 0; i < S; ++i) {
          const int64_t k = (n * C + c) * S + i;
          double o = gamma[c] * ((x[k] - mu) / sigma_b * r + d) + beta[c];
          if (!res.empty()) o += res[k];
          y[k] = relu ? std::max(o, 0.0) : o;
        }
      }
      mean[c] += momentum * (mu - mean[c]);
      var[c] += momentum * (v * double(N * S) / double(N * S - 1) - var[c]);
    }
    return y;
  }
};

std::vector<double> to_double(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

/// max |a - b| / max |b|.
double rel_err(const Tensor& a, const std::vector<double>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, std::fabs(a.data()[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return scale > 0 ? err / scale : err;
}

}  // namespace

TEST_CASE("Batch Renorm matches Algorithm 1 in double: outputs, gradients, running statistics",
          "[bn][renorm]") {
  Generator gen(31);
  const int64_t N = 8, C = 4, H = 3, W = 3, S = H * W;
  Tensor x({N, C, H, W}), res({N, C, H, W}), R({N, C, H, W});
  for (float& v : x.mutable_vec()) v = 0.5f + 1.5f * gen.normal();
  for (Tensor* t : {&res, &R})
    for (float& v : t->mutable_vec()) v = gen.normal();
  for (int64_t G : {int64_t(0), int64_t(4)}) {  // the whole batch; ghost groups of 4 images
    for (int mode = 0; mode < 3; ++mode) {      // plain, fused ReLU, fused residual + ReLU
      INFO("group_size " << G << ", mode " << mode);
      BatchNorm2d bn{BatchNormOptions(C)};
      bn.renorm = ops::BatchRenorm{1.5f, 0.5f};
      bn.group_size = G;
      for (float& v : bn.weight.mutable_vec()) v = 0.5f + gen.uniform();
      for (float& v : bn.bias.mutable_vec()) v = gen.normal();
      // Running statistics that make some channels clip r or d and leave others inside.
      const std::vector<float> rm0 = {0.5f, 2.0f, -1.0f, 0.4f}, rv0 = {2.0f, 0.3f, 9.0f, 1.0f};
      bn.running_mean.copy_(Tensor({C}, rm0));
      bn.running_var.copy_(Tensor({C}, rv0));
      Tensor xi = x.clone(), ri = res.clone();
      xi.set_requires_grad(true);
      ri.set_requires_grad(true);
      Tensor y = mode == 0 ? bn(xi) : mode == 1 ? bn.forward_relu(xi) : bn.forward_add_relu(xi, ri);
      y.backward(R);

      Reference ref{G > 0 ? G : N, C, S};
      ref.r_max = 1.5;
      ref.d_max = 0.5;
      ref.relu = mode > 0;
      ref.gamma = to_double(bn.weight);
      ref.beta = to_double(bn.bias);
      const std::vector<double> xd = to_double(x),
                                resd = mode == 2 ? to_double(res) : std::vector<double>{};
      const std::vector<double> Rd = to_double(R);
      std::vector<double> mean(rm0.begin(), rm0.end()), var(rv0.begin(), rv0.end());
      std::vector<double> y_ref(xd.size()), dx_ref(xd.size()), dres_ref(xd.size());
      std::vector<double> dgamma_ref(C, 0.0), dbeta_ref(C, 0.0);
      int clipped = 0;
      const int64_t slice = ref.N, per = slice * C * S;
      for (int64_t n0 = 0; n0 < N; n0 += slice) {  // each group in turn
        auto part = [&](const std::vector<double>& v) {
          return v.empty()
                     ? v
                     : std::vector<double>(v.begin() + n0 * C * S, v.begin() + n0 * C * S + per);
        };
        const std::vector<double> xs = part(xd), rs = part(resd), Rs = part(Rd);
        std::vector<double> r(C), d(C), m0 = mean, v0 = var;
        const std::vector<double> ys = ref.forward(xs, rs, mean, var, &r, &d, nullptr, nullptr);
        for (int64_t c = 0; c < C; ++c)
          clipped += (r[c] == 1.5 || r[c] == 1 / 1.5) + (std::fabs(d[c]) == 0.5);
        std::copy(ys.begin(), ys.end(), y_ref.begin() + n0 * C * S);
        // L = sum(y * R) with r, d frozen; central differences in double.
        auto loss = [&](const std::vector<double>& xv, const std::vector<double>& rv,
                        const Reference& rf) {
          std::vector<double> m = m0, v = v0;
          const std::vector<double> o = rf.forward(xv, rv, m, v, nullptr, nullptr, &r, &d);
          double l = 0;
          for (size_t k = 0; k < o.size(); ++k) l += o[k] * Rs[k];
          return l;
        };
        const double h = 1e-5;
        for (int64_t k = 0; k < per; ++k) {
          std::vector<double> up = xs, down = xs;
          up[k] += h;
          down[k] -= h;
          dx_ref[n0 * C * S + k] = (loss(up, rs, ref) - loss(down, rs, ref)) / (2 * h);
          if (!rs.empty()) {
            std::vector<double> ru = rs, rd = rs;
            ru[k] += h;
            rd[k] -= h;
            dres_ref[n0 * C * S + k] = (loss(xs, ru, ref) - loss(xs, rd, ref)) / (2 * h);
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          Reference up = ref, down = ref;
          up.gamma[c] += h;
          down.gamma[c] -= h;
          dgamma_ref[c] += (loss(xs, rs, up) - loss(xs, rs, down)) / (2 * h);
          up = ref, down = ref;
          up.beta[c] += h;
          down.beta[c] -= h;
          dbeta_ref[c] += (loss(xs, rs, up) - loss(xs, rs, down)) / (2 * h);
        }
      }
      CHECK(clipped > 0);  // the clipping is exercised
      CHECK(rel_err(y, y_ref) < 1e-6);
      CHECK(rel_err(xi.grad(), dx_ref) < 1e-6);
      if (mode == 2) CHECK(rel_err(ri.grad(), dres_ref) < 1e-6);
      CHECK(rel_err(bn.weight.grad(), dgamma_ref) < 1e-6);
      CHECK(rel_err(bn.bias.grad(), dbeta_ref) < 1e-6);
      CHECK(rel_err(bn.running_mean, mean) < 1e-6);
      CHECK(rel_err(bn.running_var, var) < 1e-6);
    }
  }
}

TEST_CASE("Batch Renorm with r_max = 1 and d_max = 0 is BatchNorm, bit for bit", "[bn][renorm]") {
  Generator gen(32);
  const int64_t N = 6, C = 3, H = 4, W = 4;
  Tensor x({N, C, H, W}), res({N, C, H, W}), R({N, C, H, W});
  for (Tensor* t : {&x, &res, &R})
    for (float& v : t->mutable_vec()) v = 0.3f + gen.normal();
  for (int64_t G : {int64_t(0), int64_t(2)}) {
    for (int mode = 0; mode < 3; ++mode) {
      INFO("group_size " << G << ", mode " << mode);
      BatchNorm2d a{BatchNormOptions(C)}, b{BatchNormOptions(C)};
      for (float& v : a.weight.mutable_vec()) v = 0.5f + gen.uniform();
      for (float& v : a.bias.mutable_vec()) v = gen.normal();
      for (float& v : a.running_var.mutable_vec()) v = 0.5f + gen.uniform();
      b.weight.copy_(a.weight);
      b.bias.copy_(a.bias);
      b.running_var.copy_(a.running_var);
      a.renorm = ops::BatchRenorm{1.0f, 0.0f};
      a.group_size = b.group_size = G;
      Tensor xa = x.clone(), xb = x.clone(), ra = res.clone(), rb = res.clone();
      for (Tensor* t : {&xa, &xb, &ra, &rb}) t->set_requires_grad(true);
      auto apply = [mode](BatchNorm2d& bn, const Tensor& xi, const Tensor& ri) {
        return mode == 0 ? bn(xi) : mode == 1 ? bn.forward_relu(xi) : bn.forward_add_relu(xi, ri);
      };
      Tensor ya = apply(a, xa, ra), yb = apply(b, xb, rb);
      ya.backward(R);
      yb.backward(R);
      CHECK(ya.vec() == yb.vec());
      CHECK(xa.grad().vec() == xb.grad().vec());
      if (mode == 2) CHECK(ra.grad().vec() == rb.grad().vec());
      CHECK(a.weight.grad().vec() == b.weight.grad().vec());
      CHECK(a.bias.grad().vec() == b.bias.grad().vec());
      CHECK(a.running_mean.vec() == b.running_mean.vec());
      CHECK(a.running_var.vec() == b.running_var.vec());
    }
  }
}

TEST_CASE("Batch Renorm: eval mode is BatchNorm's, and bad settings are refused", "[bn][renorm]") {
  Generator gen(33);
  Tensor x({4, 2, 2, 2});
  for (float& v : x.mutable_vec()) v = gen.normal();
  BatchNorm2d a(2), b(2);
  a.renorm = ops::BatchRenorm{3.0f, 5.0f};
  a.eval();
  b.eval();
  CHECK(a(x).vec() == b(x).vec());
  a.train();
  a.renorm = ops::BatchRenorm{0.5f, 0.0f};
  CHECK_THROWS_WITH(a(x), Catch::Contains("r_max >= 1 and d_max >= 0"));
  a.renorm = ops::BatchRenorm{2.0f, -1.0f};
  CHECK_THROWS_WITH(a(x), Catch::Contains("r_max >= 1 and d_max >= 0"));
}

TEST_CASE("Batch Renorm's ramp and its config.json round trip", "[bn][renorm]") {
  train::TrainOptions o;
  o.bn_renorm = true;
  o.renorm_r_max = 3.0f;
  o.renorm_d_max = 5.0f;
  o.renorm_ramp_start = 0.1;
  o.renorm_ramp_end = 0.5;
  // Fixed (plain BN) until 10% of the steps, then linear, the maxima from 50% on.
  CHECK(train::renorm_at(o, 0, 1000).r_max == 1.0f);
  CHECK(train::renorm_at(o, 100, 1000).d_max == 0.0f);
  CHECK(train::renorm_at(o, 300, 1000).r_max == Approx(2.0f));
  CHECK(train::renorm_at(o, 300, 1000).d_max == Approx(2.5f));
  CHECK(train::renorm_at(o, 500, 1000).r_max == 3.0f);
  CHECK(train::renorm_at(o, 999, 1000).d_max == 5.0f);
  const train::TrainOptions back = train::config_from_json(train::config_to_json(o));
  CHECK(back.bn_renorm);
  CHECK(back.renorm_r_max == 3.0f);
  CHECK(back.renorm_ramp_start == 0.1);
  CHECK(back.renorm_ramp_end == 0.5);
  // Off: nothing written, so configs of runs without it stay as they were.
  CHECK_FALSE(train::config_to_json(train::TrainOptions{}).contains("bn_renorm"));
}
