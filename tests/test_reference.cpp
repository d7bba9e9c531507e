// minidl — reference tests: compare ops and optimizers against values computed by PyTorch.
// The fixtures in tests/fixtures/*.json come from scripts/make_reference_fixtures.py
// (rerun: /usr/bin/python3 scripts/make_reference_fixtures.py). Each file holds
//   {"meta": {...}, "tensors": {"name": {"shape": [...], "data": [...]}, ...}}
// with float32 inputs, the output gradient grad_y, and PyTorch's outputs and gradients
// (computed in float64, rounded to float32).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "core/tensor.hpp"
#include "layers/patch_whitening.hpp"
#include "optim/adam.hpp"
#include "optim/sgd.hpp"

#ifndef MINIDL_FIXTURE_DIR
#error "MINIDL_FIXTURE_DIR must be defined (the tests/fixtures directory, as a string literal)"
#endif

namespace {

using minidl::Shape;
using minidl::Tensor;
using json = nlohmann::json;

constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-4;

/// One fixture file.
struct Fixture {
  std::string file;
  json doc;

  const json& meta() const { return doc.at("meta"); }

  bool has(const std::string& name) const { return doc.at("tensors").contains(name); }

  Shape shape(const std::string& name) const {
    return doc.at("tensors").at(name).at("shape").get<Shape>();
  }

  std::vector<float> values(const std::string& name) const {
    return doc.at("tensors").at(name).at("data").get<std::vector<float>>();
  }

  /// A fresh minidl tensor holding the fixture tensor `name`.
  Tensor tensor(const std::string& name, bool requires_grad = false) const {
    if (!has(name)) throw std::runtime_error(file + ": no tensor '" + name + "'");
    return Tensor(shape(name), values(name), requires_grad);
  }
};

Fixture load(const std::string& file) {
  const std::string path = std::string(MINIDL_FIXTURE_DIR) + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  Fixture f;
  f.file = file;
  in >> f.doc;
  return f;
}

/// |got - want| <= atol + rtol * |want| elementwise (NaN fails). On failure, reports the tensor
/// name, the number of mismatches and the first few indices with both values.
void expect_close(const Fixture& fx, const std::string& name, const Shape& got_shape,
                  const float* got, size_t got_size, double atol = kAtol, double rtol = kRtol) {
  const Shape want_shape = fx.shape(name);
  const std::vector<float> want = fx.values(name);
  INFO(fx.file << ": " << name << " shape: got " << minidl::shape_str(got_shape) << ", expected "
               << minidl::shape_str(want_shape));
  REQUIRE(got_shape == want_shape);
  REQUIRE(got_size == want.size());
  std::ostringstream msg;
  msg << std::setprecision(9);
  int64_t bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double a = got[i], b = want[i];
    const double err = std::fabs(a - b);
    if (!(err <= atol + rtol * std::fabs(b))) {
      if (bad < 5) {
        msg << "\n  " << name << "[" << i << "]: got " << a << ", expected " << b << " (|diff| "
            << err << ")";
      }
      ++bad;
    }
    if (err > worst || std::isnan(err)) worst = err;
  }
  INFO(fx.file << ": " << name << ": " << bad << " of " << want.size() << " values outside atol "
               << atol << " + rtol " << rtol << " (max |diff| " << worst << ")" << msg.str());
  CHECK(bad == 0);
}

void expect_close(const Fixture& fx, const std::string& name, const Tensor& got,
                  double atol = kAtol, double rtol = kRtol) {
  INFO(fx.file << ": " << name);
  REQUIRE(got.defined());
  expect_close(fx, name, got.shape(), got.data(), static_cast<size_t>(got.numel()), atol, rtol);
}

/// The gradient accumulated in `t`, compared with fixture tensor `name`.
void expect_grad_close(const Fixture& fx, const std::string& name, const Tensor& t) {
  INFO(fx.file << ": " << name << " (gradient)");
  REQUIRE(t.has_grad());
  expect_close(fx, name, t.grad());
}

// ---------------------------------------------------------------------------------------------

void check_linear(const std::string& file) {
  const Fixture fx = load(file);
  Tensor x = fx.tensor("x", true);
  Tensor w = fx.tensor("weight", true);
  Tensor b = fx.tensor("bias", true);
  Tensor y = minidl::ops::linear(x, w, b);
  expect_close(fx, "y", y);
  y.backward(fx.tensor("grad_y"));
  expect_grad_close(fx, "grad_x", x);
  expect_grad_close(fx, "grad_weight", w);
  expect_grad_close(fx, "grad_bias", b);
}

void check_conv2d(const std::string& file) {
  const Fixture fx = load(file);
  const bool has_bias = fx.meta().at("has_bias").get<bool>();
  const int64_t stride = fx.meta().at("stride").get<int64_t>();
  const int64_t padding = fx.meta().at("padding").get<int64_t>();
  Tensor x = fx.tensor("x", true);
  Tensor w = fx.tensor("weight", true);
  Tensor b = has_bias ? fx.tensor("bias", true) : Tensor();
  Tensor y = minidl::ops::conv2d(x, w, b, stride, padding);
  expect_close(fx, "y", y);
  y.backward(fx.tensor("grad_y"));
  expect_grad_close(fx, "grad_x", x);
  expect_grad_close(fx, "grad_weight", w);
  if (has_bias) expect_grad_close(fx, "grad_bias", b);
}

void check_batch_norm(const std::string& file) {
  const Fixture fx = load(file);
  const bool training = fx.meta().at("training").get<bool>();
  const float momentum = fx.meta().at("momentum").get<float>();
  const float eps = fx.meta().at("eps").get<float>();
  Tensor x = fx.tensor("x", true);
  Tensor w = fx.tensor("weight", true);
  Tensor b = fx.tensor("bias", true);
  Tensor running_mean = fx.tensor("running_mean");
  Tensor running_var = fx.tensor("running_var");
  Tensor y = minidl::ops::batch_norm(x, w, b, running_mean, running_var, training, momentum, eps);
  expect_close(fx, "y", y);
  // Running statistics are updated in place (training) or left alone (eval).
  expect_close(fx, "running_mean_after", running_mean);
  expect_close(fx, "running_var_after", running_var);
  y.backward(fx.tensor("grad_y"));
  expect_grad_close(fx, "grad_x", x);
  expect_grad_close(fx, "grad_weight", w);
  expect_grad_close(fx, "grad_bias", b);
}

void check_cross_entropy(const std::string& file) {
  const Fixture fx = load(file);
  const float smoothing = fx.meta().at("label_smoothing").get<float>();
  const std::vector<int32_t> labels = fx.meta().at("labels").get<std::vector<int32_t>>();
  Tensor logits = fx.tensor("logits", true);
  Tensor loss = minidl::ops::cross_entropy(logits, labels, smoothing);
  expect_close(fx, "loss", loss);
  loss.backward();
  expect_grad_close(fx, "grad_logits", logits);
}

void check_max_pool2d(const std::string& file) {
  const Fixture fx = load(file);
  const int64_t k = fx.meta().at("kernel_size").get<int64_t>();
  const int64_t s = fx.meta().at("stride").get<int64_t>();
  const int64_t p = fx.meta().at("padding").get<int64_t>();
  Tensor x = fx.tensor("x", true);
  Tensor y = minidl::ops::max_pool2d(x, k, s, p);
  expect_close(fx, "y", y);
  y.backward(fx.tensor("grad_y"));
  expect_grad_close(fx, "grad_x", x);
}

/// A one-input op against its fixture: y, then grad_x from backward(grad_y).
void check_unary(const std::string& file, Tensor (*op)(const Tensor&)) {
  const Fixture fx = load(file);
  Tensor x = fx.tensor("x", true);
  Tensor y = op(x);
  expect_close(fx, "y", y);
  y.backward(fx.tensor("grad_y"));
  expect_grad_close(fx, "grad_x", x);
}

/// Runs `opt` for three steps on parameter `p` with gradients g1, g2, g3 written into p's
/// gradient storage, comparing p after each step.
template <class Opt>
void run_optimizer_steps(const Fixture& fx, Tensor& p, Opt& opt) {
  for (int step = 1; step <= 3; ++step) {
    const std::vector<float> g = fx.values("g" + std::to_string(step));
    REQUIRE(static_cast<int64_t>(g.size()) == p.numel());
    float* gd = p.grad_data();
    for (size_t i = 0; i < g.size(); ++i) gd[i] = g[i];
    opt.step();
    INFO("after step " << step);
    expect_close(fx, "p_after_" + std::to_string(step), p);
  }
}

void check_sgd(const std::string& file) {
  const Fixture fx = load(file);
  const json& m = fx.meta();
  minidl::optim::SGDOptions o;
  o.lr = m.at("lr").get<float>();
  o.momentum = m.at("momentum").get<float>();
  o.weight_decay = m.at("weight_decay").get<float>();
  o.nesterov = m.at("nesterov").get<bool>();
  Tensor p = fx.tensor("p", true);
  minidl::optim::SGD opt(std::vector<Tensor>{p}, o);
  run_optimizer_steps(fx, p, opt);
}

void check_adam(const std::string& file) {
  const Fixture fx = load(file);
  const json& m = fx.meta();
  minidl::optim::AdamOptions o;
  o.lr = m.at("lr").get<float>();
  o.beta1 = m.at("beta1").get<float>();
  o.beta2 = m.at("beta2").get<float>();
  o.eps = m.at("eps").get<float>();
  o.weight_decay = m.at("weight_decay").get<float>();
  o.decoupled_weight_decay = m.at("decoupled_weight_decay").get<bool>();
  Tensor p = fx.tensor("p", true);
  minidl::optim::Adam opt(std::vector<Tensor>{p}, o);
  run_optimizer_steps(fx, p, opt);
}

}  // namespace

TEST_CASE("linear matches PyTorch", "[reference][linear]") { check_linear("linear.json"); }

TEST_CASE("conv2d matches PyTorch", "[reference][conv2d]") {
  for (const char* file : {"conv2d_k3s1p1_bias.json", "conv2d_k3s2p1.json", "conv2d_k1s2p0.json",
                           "conv2d_k5s1p2_rect.json", "conv2d_k3x5s2p1_rectkernel.json"}) {
    SECTION(file) { check_conv2d(file); }
  }
}

TEST_CASE("batch_norm matches PyTorch", "[reference][batch_norm]") {
  for (const char* file : {"batch_norm2d_train.json", "batch_norm2d_eval.json",
                           "batch_norm1d_train.json", "batch_norm1d_eval.json"}) {
    SECTION(file) { check_batch_norm(file); }
  }
}

TEST_CASE("cross_entropy matches PyTorch", "[reference][cross_entropy]") {
  for (const char* file : {"cross_entropy.json", "cross_entropy_ls.json"}) {
    SECTION(file) { check_cross_entropy(file); }
  }
}

TEST_CASE("max_pool2d matches PyTorch", "[reference][max_pool2d]") {
  for (const char* file : {"max_pool2d_k2s2.json", "max_pool2d_k3s2p1.json"}) {
    SECTION(file) { check_max_pool2d(file); }
  }
}

TEST_CASE("global_avg_pool2d matches PyTorch", "[reference][global_avg_pool]") {
  check_unary("global_avg_pool.json", minidl::ops::global_avg_pool2d);
}

TEST_CASE("gelu matches PyTorch", "[reference][gelu]") {
  check_unary("gelu.json", minidl::ops::gelu);
}

TEST_CASE("SGD matches torch.optim.SGD", "[reference][optim][sgd]") {
  for (const char* file : {"sgd_plain.json", "sgd_momentum.json", "sgd_nesterov.json"}) {
    SECTION(file) { check_sgd(file); }
  }
}

TEST_CASE("SGD parameter groups match torch.optim.SGD with two groups", "[reference][optim][sgd]") {
  const Fixture fx = load("sgd_param_groups.json");
  const json& m = fx.meta();
  minidl::optim::SGDOptions o;
  o.lr = m.at("lr").get<float>();
  o.momentum = m.at("momentum").get<float>();
  o.weight_decay = m.at("weight_decay").get<float>();
  o.nesterov = m.at("nesterov").get<bool>();
  Tensor p = fx.tensor("p", true), q = fx.tensor("q", true);
  minidl::optim::SGD opt(std::vector<Tensor>{p, q}, o);
  opt.set_param_group(q, m.at("q_lr_scale").get<float>(), m.at("q_weight_decay").get<float>());
  for (int step = 1; step <= 3; ++step) {
    for (auto [t, name] : {std::pair{&p, "gp"}, std::pair{&q, "gq"}}) {
      const std::vector<float> g = fx.values(name + std::to_string(step));
      float* gd = t->grad_data();
      for (size_t i = 0; i < g.size(); ++i) gd[i] = g[i];
    }
    opt.step();
    INFO("after step " << step);
    expect_close(fx, "p_after_" + std::to_string(step), p);
    expect_close(fx, "q_after_" + std::to_string(step), q);
  }
  CHECK_THROWS_WITH(opt.set_param_group(Tensor({2}), 1.0f, 0.0f),
                    Catch::Contains("not a parameter of this optimizer"));
  CHECK_THROWS_WITH(opt.set_param_group(q, -1.0f, 0.0f), Catch::Contains("must be >= 0"));
}

TEST_CASE("Adam and AdamW match torch.optim", "[reference][optim][adam]") {
  for (const char* file : {"adam.json", "adamw.json"}) {
    SECTION(file) { check_adam(file); }
  }
}

TEST_CASE("patch whitening reproduces PyTorch's eigendecomposition of the patch covariance",
          "[reference][airbench]") {
  const Fixture fx = load("patch_whitening.json");
  const Tensor x = fx.tensor("x");
  const int64_t k = fx.meta().at("kernel_size").get<int64_t>();
  const double eps = fx.meta().at("eps").get<double>();
  const minidl::PatchEigen e = minidl::patch_eigen(x, k);
  expect_close(fx, "eigenvalues", e.eigenvalues, 1e-4, 1e-4);
  expect_close(fx, "eigenvectors", e.eigenvectors, 1e-4, 1e-4);
  expect_close(fx, "weight", minidl::patch_whitening_weight(x, k, eps), 1e-4, 1e-4);
  // The conv made from it whitens its own patches: the first D outputs have second moments
  // lambda_i / (lambda_i + eps), near 1, and are uncorrelated.
  const Tensor w = minidl::patch_whitening_weight(x, k, eps);
  const Tensor y = minidl::ops::conv2d(x, w, Tensor(), 1, 0);  // [6, 24, 7, 7]
  const int64_t N = y.size(0), C = y.size(1), P = y.size(2) * y.size(3), D = C / 2;
  const std::vector<float> lambda = fx.values("eigenvalues");
  for (int64_t i = 0; i < D; ++i) {
    for (int64_t j = 0; j < D; ++j) {
      double m = 0.0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p)
          m += double(y.data()[(n * C + i) * P + p]) * y.data()[(n * C + j) * P + p];
      m /= double(N * P);
      const double want = i == j ? lambda[i] / (lambda[i] + eps) : 0.0;
      INFO("second moment of outputs " << i << ", " << j);
      CHECK(m == Approx(want).margin(1e-4));
    }
  }
  CHECK_THROWS_WITH(minidl::patch_eigen(Tensor({2, 3, 8}), 2), Catch::Contains("[N, C, H, W]"));
  CHECK_THROWS_WITH(minidl::patch_eigen(x, 9), Catch::Contains("kernel_size"));
  Tensor nan_x({1, 3, 4, 4});
  nan_x.mutable_data()[5] = NAN;
  CHECK_THROWS_WITH(minidl::patch_eigen(nan_x, 2), Catch::Contains("non-finite value at index 5"));
}

TEST_CASE(
    "patch whitening with k components: the k leading filters of the full weight, then "
    "their negatives",
    "[reference][airbench][whitening]") {
  const Fixture fx = load("patch_whitening.json");
  const Tensor x = fx.tensor("x");
  const int64_t k = fx.meta().at("kernel_size").get<int64_t>();
  const double eps = fx.meta().at("eps").get<double>();
  const Tensor full = minidl::patch_whitening_weight(x, k, eps);  // [2 D, C, k, k]
  const int64_t D = full.size(0) / 2, per = full.numel() / full.size(0);
  REQUIRE(D == x.size(1) * k * k);
  for (const int64_t m : {int64_t{1}, int64_t{5}, D}) {
    INFO("components " << m);
    const Tensor w = minidl::patch_whitening_weight(x, k, eps, m);
    REQUIRE(w.shape() == Shape{2 * m, x.size(1), k, k});
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t e = 0; e < per; ++e) {
        CHECK(w.data()[i * per + e] == full.data()[i * per + e]);
        CHECK(w.data()[(m + i) * per + e] == -full.data()[i * per + e]);
      }
    }
  }
  for (const int64_t bad : {int64_t{0}, D + 1, int64_t{-2}}) {
    CHECK_THROWS_WITH(minidl::patch_whitening_weight(x, k, eps, bad),
                      "patch_whitening_weight: components must be from 1 to " + std::to_string(D) +
                          " (the values of a patch) or -1, got " + std::to_string(bad));
  }
}
