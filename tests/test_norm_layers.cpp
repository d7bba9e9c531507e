// GroupNorm and LayerNorm (core/group_norm.cpp, layers/group_norm.hpp, layers/layer_norm.hpp) and
// the ResNets' --norm choice (layers/models/resnet.hpp):
// - outputs and gradients against PyTorch (tests/fixtures/{group,layer}_norm*.json and
//   resnet_norm_*.json, from /usr/bin/python3 scripts/make_reference_fixtures.py);
// - a naive double-precision reference of both ops over a grid of shapes, including rows whose
//   |mean| / std is 1e5 (where a float x - mean would be off by 1e-3);
// - finite-difference gradient checks with and without affine, and with an accumulated dx;
// - no batch dependence: an image alone gives the same bits as inside a batch, train = eval;
// - the errors (op, layer, model, training options) and the config.json / checkpoint round trip.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "gradcheck.hpp"
#include "layers/group_norm.hpp"
#include "layers/layer_norm.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/resnet.hpp"
#include "layers/simple.hpp"
#include "optim/freeze.hpp"
#include "test_util.hpp"
#include "train/run_dir.hpp"

using namespace minidl;
using minidl::testing::gradcheck;
using minidl::testing::randn;

namespace {

using json = nlohmann::json;

/// One fixture file of scripts/make_reference_fixtures.py.
struct Fixture {
  std::string file;
  json doc;
  const json& meta() const { return doc.at("meta"); }
  bool has(const std::string& name) const { return doc.at("tensors").contains(name); }
  Tensor tensor(const std::string& name, bool requires_grad = false) const {
    const json& t = doc.at("tensors").at(name);
    return Tensor(t.at("shape").get<Shape>(), t.at("data").get<std::vector<float>>(),
                  requires_grad);
  }
};

Fixture load(const std::string& file) {
  std::ifstream in(std::string(MINIDL_FIXTURE_DIR) + "/" + file);
  REQUIRE(in);
  Fixture f;
  f.file = file;
  in >> f.doc;
  return f;
}

/// Checks |got - want| <= tol * max(1, |want|) elementwise against fixture tensor `name`, and
/// prints the largest |got - want| (the tolerance actually achieved).
void expect_close(const Fixture& fx, const std::string& name, const Tensor& got,
                  double tol = 1e-5) {
  INFO(fx.file << ": " << name);
  REQUIRE(got.defined());
  const Tensor want = fx.tensor(name);
  REQUIRE(got.shape() == want.shape());
  double worst = 0.0;
  int64_t bad = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double a = got.data()[i], b = want.data()[i], err = std::fabs(a - b);
    if (!(err <= tol * std::max(1.0, std::fabs(b)))) ++bad;
    if (!(err <= worst)) worst = err;
  }
  std::printf("%-28s %-34s max |diff| %.3g\n", fx.file.c_str(), name.c_str(), worst);
  INFO(bad << " of " << want.numel() << " values outside " << tol << " (max |diff| " << worst
           << ")");
  CHECK(bad == 0);
}

void expect_grad_close(const Fixture& fx, const std::string& name, const Tensor& t,
                       double tol = 1e-5) {
  INFO(fx.file << ": gradient " << name);
  REQUIRE(t.has_grad());
  expect_close(fx, name, t.grad(), tol);
}

/// The bits of a tensor, for exact comparisons.
std::vector<float> bits(const Tensor& t) {
  return std::vector<float>(t.data(), t.data() + t.numel());
}

bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, sizeof(float) * static_cast<size_t>(n)) == 0;
}

/// The naive reference, in double with plain loops: x [N, C, S] in G groups (G = 1 with
/// `elementwise` is layer_norm over the C * S trailing values, weight/bias [C * S]); fills y,
/// and dx, dw, db of sum(y * dy).
struct Reference {
  std::vector<double> y, dx, dw, db;
};
Reference naive_norm(const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& b, const std::vector<float>& dy, int64_t N,
                     int64_t C, int64_t S, int64_t G, bool elementwise, double eps) {
  const int64_t D = C / G * S;
  const size_t P = elementwise ? static_cast<size_t>(C * S) : static_cast<size_t>(C);
  Reference r{std::vector<double>(x.size()), std::vector<double>(x.size()),
              std::vector<double>(P, 0.0), std::vector<double>(P, 0.0)};
  auto param = [&](int64_t c, int64_t s) { return elementwise ? c * S + s : c; };
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = (n * C + g * (C / G)) * S;
      double mean = 0.0, var = 0.0;
      for (int64_t i = 0; i < D; ++i) mean += x[base + i];
      mean /= D;
      for (int64_t i = 0; i < D; ++i) var += (x[base + i] - mean) * (x[base + i] - mean);
      var /= D;
      const double is = 1.0 / std::sqrt(var + eps);
      double mg = 0.0, mgx = 0.0;  // mean(g), mean(g x_hat), g = dy * w
      for (int64_t i = 0; i < D; ++i) {
        const int64_t c = g * (C / G) + i / S, p = param(c, i % S);
        const double xh = (x[base + i] - mean) * is;
        const double wv = w.empty() ? 1.0 : w[p];
        r.y[base + i] = wv * xh + (b.empty() ? 0.0 : b[p]);
        mg += dy[base + i] * wv / D;
        mgx += dy[base + i] * wv * xh / D;
        r.dw[p] += dy[base + i] * xh;
        r.db[p] += dy[base + i];
      }
      for (int64_t i = 0; i < D; ++i) {
        const int64_t c = g * (C / G) + i / S, p = param(c, i % S);
        const double xh = (x[base + i] - mean) * is;
        r.dx[base + i] = is * (dy[base + i] * (w.empty() ? 1.0 : w[p]) - mg - xh * mgx);
      }
    }
  }
  return r;
}

/// max |got - want| / max(1, |want|) over the elements.
double worst_error(const float* got, const std::vector<double>& want) {
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(got[i] - want[i]) / std::max(1.0, std::fabs(want[i])));
  return worst;
}

/// Fills every tensor of `model`'s state_dict as scripts/make_reference_fixtures.py's
/// formula_values does.
void formula_fill(Module& model) {
  for (auto& [name, t] : model.state_dict()) {
    int64_t h = 0;
    for (size_t j = 0; j < name.size(); ++j)
      h += static_cast<int64_t>(j + 1) * static_cast<unsigned char>(name[j]);
    h %= 997;
    const int64_t fan_in = t.dim() >= 2 ? t.numel() / t.size(0) : 1;
    float* v = t.mutable_data();
    for (int64_t i = 0; i < t.numel(); ++i) {
      double s = std::sin(0.7 * static_cast<double>(i) + static_cast<double>(h) / 100.0);
      if (t.dim() >= 2)
        s = s * 2.0 / std::sqrt(static_cast<double>(fan_in));
      else if (name.size() >= 7 && name.compare(name.size() - 7, 7, ".weight") == 0)
        s = 1.0 + 0.3 * s;
      else
        s = 0.2 * s;
      v[i] = static_cast<float>(s);
    }
  }
}

/// The message of the std::invalid_argument that f throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---- PyTorch reference values ---------------------------------------------------------------

TEST_CASE("group_norm matches torch.nn.functional.group_norm to 1e-5", "[norm][reference]") {
  for (const char* file : {"group_norm.json", "group_norm_g1.json", "group_norm_3d_noaffine.json",
                           "group_norm_offset.json"}) {
    const Fixture fx = load(file);
    const bool affine = fx.meta().at("affine").get<bool>();
    Tensor x = fx.tensor("x", true);
    Tensor w = affine ? fx.tensor("weight", true) : Tensor();
    Tensor b = affine ? fx.tensor("bias", true) : Tensor();
    Tensor y = ops::group_norm(x, fx.meta().at("num_groups").get<int64_t>(), w, b,
                               fx.meta().at("eps").get<float>());
    expect_close(fx, "y", y);
    y.backward(fx.tensor("grad_y"));
    expect_grad_close(fx, "grad_x", x);
    if (affine) {
      expect_grad_close(fx, "grad_weight", w);
      expect_grad_close(fx, "grad_bias", b);
    }
  }
}

TEST_CASE("layer_norm matches torch.nn.functional.layer_norm to 1e-5", "[norm][reference]") {
  for (const char* file : {"layer_norm.json", "layer_norm_4d.json", "layer_norm_noaffine.json"}) {
    const Fixture fx = load(file);
    const bool affine = fx.meta().at("elementwise_affine").get<bool>();
    Tensor x = fx.tensor("x", true);
    Tensor w = affine ? fx.tensor("weight", true) : Tensor();
    Tensor b = affine ? fx.tensor("bias", true) : Tensor();
    Tensor y = ops::layer_norm(x, fx.meta().at("normalized_shape").get<Shape>(), w, b,
                               fx.meta().at("eps").get<float>());
    expect_close(fx, "y", y);
    y.backward(fx.tensor("grad_y"));
    expect_grad_close(fx, "grad_x", x);
    if (affine) {
      expect_grad_close(fx, "grad_weight", w);
      expect_grad_close(fx, "grad_bias", b);
    }
  }
}

TEST_CASE("the GroupNorm and LayerNorm layers give PyTorch's values through their parameters",
          "[norm][reference]") {
  {
    const Fixture fx = load("group_norm.json");
    GroupNorm gn(GroupNormOptions(fx.meta().at("num_groups").get<int64_t>(), 6));
    gn.load_state_dict({{"weight", fx.tensor("weight")}, {"bias", fx.tensor("bias")}});
    Tensor x = fx.tensor("x", true);
    Tensor y = gn(x);
    expect_close(fx, "y", y);
    y.backward(fx.tensor("grad_y"));
    expect_grad_close(fx, "grad_x", x);
    expect_grad_close(fx, "grad_weight", gn.weight);
    expect_grad_close(fx, "grad_bias", gn.bias);
  }
  {
    const Fixture fx = load("layer_norm_4d.json");
    LayerNorm ln(LayerNormOptions({3, 4, 4}));
    ln.load_state_dict({{"weight", fx.tensor("weight")}, {"bias", fx.tensor("bias")}});
    Tensor x = fx.tensor("x", true);
    Tensor y = ln(x);
    expect_close(fx, "y", y);
    y.backward(fx.tensor("grad_y"));
    expect_grad_close(fx, "grad_x", x);
    expect_grad_close(fx, "grad_weight", ln.weight);
    expect_grad_close(fx, "grad_bias", ln.bias);
  }
}

TEST_CASE("resnet8_4 with --norm gn, ln and none matches the same network in torch.nn",
          "[norm][reference][models]") {
  for (const char* file : {"resnet_norm_gn.json", "resnet_norm_ln.json", "resnet_norm_none.json"}) {
    const Fixture fx = load(file);
    ModelOptions o;
    o.norm = parse_enum<NormKind>(fx.meta().at("norm").get<std::string>(), "norm");
    o.gn_groups = fx.meta().at("gn_groups").get<int64_t>();
    auto model = create_model(fx.meta().at("model").get<std::string>(), o);
    // The same state names, in the same order, as torch.nn (torchvision's: "bn1" whatever the
    // norm layer).
    const NamedTensors state = model->state_dict();
    const auto names = fx.meta().at("state_names").get<std::vector<std::string>>();
    REQUIRE(state.size() == names.size());
    for (size_t i = 0; i < names.size(); ++i) CHECK(state[i].first == names[i]);
    formula_fill(*model);
    model->train();
    Tensor x = fx.tensor("x", true);
    Tensor y = (*model)(x);
    // float32 through 7 convolutions (Winograd's included) against float64: 1e-4.
    expect_close(fx, "y", y, 1e-4);
    y.backward(fx.tensor("grad_y"));
    expect_grad_close(fx, "grad_x", x, 1e-4);
    for (const auto& [name, p] : model->named_parameters()) {
      if (fx.has("grad." + name)) expect_grad_close(fx, "grad." + name, p, 1e-4);
    }
  }
}

// ---- the naive reference --------------------------------------------------------------------

TEST_CASE("group_norm and layer_norm equal a naive double reference over a grid of shapes",
          "[norm]") {
  struct Case {
    int64_t N, C, S, G;
    float shift, scale;
  };
  // S = 1, 5, 17 (a tail after the 8 lanes), 64; one group, one channel per group; rows with
  // |mean| / std = 1e5 (shift 1e4, scale 0.1), where x - mean in float loses 1e-3 of x_hat.
  const Case cases[] = {{3, 6, 1, 3, 0.5f, 2.0f},   {2, 4, 5, 2, 0.5f, 2.0f},
                        {1, 4, 17, 1, 0.5f, 2.0f},  {3, 8, 64, 4, -1.0f, 1.0f},
                        {2, 6, 9, 6, 0.5f, 2.0f},   {2, 4, 17, 2, 1e4f, 0.1f},
                        {2, 3, 64, 1, -1e4f, 0.1f}, {4, 2, 3, 1, 0.0f, 1e-3f}};
  for (const Case& c : cases) {
    for (bool affine : {true, false}) {
      for (bool layer : {false, true}) {  // layer: layer_norm over [C, S], elementwise affine
        INFO("N " << c.N << " C " << c.C << " S " << c.S << " G " << c.G << " shift " << c.shift
                  << " affine " << affine << (layer ? " layer_norm" : " group_norm"));
        Generator g(17);
        const Shape xs = {c.N, c.C, c.S};
        const Shape ps = layer ? Shape{c.C, c.S} : Shape{c.C};
        Tensor x = randn(xs, g, c.scale, c.shift, true);
        Tensor w = affine ? randn(ps, g, 0.5f, 1.0f, true) : Tensor();
        Tensor b = affine ? randn(ps, g, 0.5f, 0.1f, true) : Tensor();
        Tensor dy = randn(xs, g);
        Tensor y =
            layer ? ops::layer_norm(x, ps, w, b, 1e-5f) : ops::group_norm(x, c.G, w, b, 1e-5f);
        y.backward(dy);
        const Reference r = naive_norm(bits(x), affine ? bits(w) : std::vector<float>(),
                                       affine ? bits(b) : std::vector<float>(), bits(dy), c.N, c.C,
                                       c.S, layer ? 1 : c.G, layer, 1e-5);
        CHECK(worst_error(y.data(), r.y) < 1e-5);
        CHECK(worst_error(x.grad_data(), r.dx) < 1e-5);
        if (affine) {
          CHECK(worst_error(w.grad_data(), r.dw) < 1e-5);
          CHECK(worst_error(b.grad_data(), r.db) < 1e-5);
        }
      }
    }
  }
}

// ---- gradient checks ------------------------------------------------------------------------

TEST_CASE("gradcheck group_norm with and without affine", "[norm][gradcheck]") {
  struct Case {
    Shape x;
    int64_t G;
  };
  for (const Case& c :
       {Case{{2, 6, 3, 3}, 3}, Case{{2, 4, 3, 3}, 1}, Case{{3, 4, 5}, 4}, Case{{4, 6}, 2}}) {
    for (bool affine : {true, false}) {
      Generator g(21);
      const int64_t C = c.x[1];
      INFO("x " << shape_str(c.x) << " G " << c.G << " affine " << affine);
      gradcheck(
          [&](const std::vector<Tensor>& t) { return ops::group_norm(t[0], c.G, t[1], t[2]); },
          {randn(c.x, g, 2, 0.5, true), affine ? randn({C}, g, 0.5, 1, true) : Tensor(),
           affine ? randn({C}, g, 1, 0, true) : Tensor()},
          1e-2, 3e-2, 3e-3);
    }
  }
}

TEST_CASE("gradcheck layer_norm with and without affine", "[norm][gradcheck]") {
  struct Case {
    Shape x, normalized;
  };
  for (const Case& c : {Case{{3, 5}, {5}}, Case{{2, 3, 4}, {3, 4}}, Case{{2, 3, 4}, {4}},
                        Case{{2, 2, 3, 3}, {2, 3, 3}}}) {
    for (bool affine : {true, false}) {
      Generator g(22);
      INFO("x " << shape_str(c.x) << " normalized_shape " << shape_str(c.normalized) << " affine "
                << affine);
      gradcheck(
          [&](const std::vector<Tensor>& t) {
            return ops::layer_norm(t[0], c.normalized, t[1], t[2]);
          },
          {randn(c.x, g, 2, 0.5, true), affine ? randn(c.normalized, g, 0.5, 1, true) : Tensor(),
           affine ? randn(c.normalized, g, 1, 0, true) : Tensor()},
          1e-2, 3e-2, 3e-3);
    }
  }
}

TEST_CASE("gradcheck group_norm and layer_norm when x's gradient accumulates",
          "[norm][gradcheck]") {
  // y = norm(x) + x: add's backward writes x's gradient first, then the norm's backward adds
  // to it (the += path of its dx).
  Generator g(23);
  gradcheck(
      [](const std::vector<Tensor>& t) {
        return ops::add(ops::group_norm(t[0], 2, t[1], t[2]), t[0]);
      },
      {randn({2, 4, 3, 3}, g, 2, 0.5, true), randn({4}, g, 0.5, 1, true),
       randn({4}, g, 1, 0, true)},
      1e-2, 3e-2, 3e-3);
  gradcheck(
      [](const std::vector<Tensor>& t) {
        return ops::add(ops::layer_norm(t[0], {3, 4}, t[1], t[2]), t[0]);
      },
      {randn({2, 3, 4}, g, 2, 0.5, true), randn({3, 4}, g, 0.5, 1, true),
       randn({3, 4}, g, 1, 0, true)},
      1e-2, 3e-2, 3e-3);
}

// ---- no batch dependence --------------------------------------------------------------------

TEST_CASE("GroupNorm and LayerNorm: one image alone gives its bits inside a batch, train = eval",
          "[norm]") {
  Generator g(31);
  const Tensor batch = randn({5, 8, 6, 6}, g, 2.0f, 0.5f);
  const Tensor dy = randn({5, 8, 6, 6}, g);
  GroupNorm gn(GroupNormOptions(4, 8));
  LayerNorm ln(LayerNormOptions({8, 6, 6}));
  for (Module* layer : {static_cast<Module*>(&gn), static_cast<Module*>(&ln)}) {
    for (Tensor& p : layer->parameters()) {
      for (float& v : p.mutable_vec()) v = 0.5f + g.uniform();
    }
    INFO(layer->type_name());
    layer->train();
    Tensor xb = batch.clone();
    xb.set_requires_grad(true);
    Tensor yb = (*layer)(xb);
    yb.backward(dy);
    const int64_t per = 8 * 6 * 6;
    for (int64_t n : {0, 3, 4}) {
      INFO("image " << n);
      Tensor x1({1, 8, 6, 6},
                std::vector<float>(batch.data() + n * per, batch.data() + (n + 1) * per), true);
      Tensor y1 = (*layer)(x1);
      y1.backward(
          Tensor({1, 8, 6, 6}, std::vector<float>(dy.data() + n * per, dy.data() + (n + 1) * per)));
      CHECK(same_bits(y1.data(), yb.data() + n * per, per));
      CHECK(same_bits(x1.grad_data(), xb.grad_data() + n * per, per));
    }
    // A batch whose other images are different: the same bits for image 0.
    Tensor other = batch.clone();
    for (int64_t i = per; i < other.numel(); ++i) other.mutable_data()[i] *= 3.0f;
    CHECK(same_bits((*layer)(other).data(), yb.data(), per));
    // Eval mode computes the same thing.
    NoGradGuard no_grad;
    layer->eval();
    const Tensor ye = (*layer)(batch);
    CHECK(same_bits(ye.data(), yb.data(), batch.numel()));
  }
}

// ---- the layers -----------------------------------------------------------------------------

TEST_CASE("GroupNorm and LayerNorm: PyTorch's parameter names and init, no buffers", "[norm]") {
  GroupNorm gn(GroupNormOptions(2, 6));
  CHECK(gn.type_name() == "GroupNorm");
  NamedTensors p = gn.named_parameters();
  REQUIRE(p.size() == 2);
  CHECK(p[0].first == "weight");
  CHECK(p[1].first == "bias");
  CHECK(p[0].second.shape() == Shape{6});
  for (float v : p[0].second.vec()) CHECK(v == 1.0f);
  for (float v : p[1].second.vec()) CHECK(v == 0.0f);
  CHECK(gn.named_buffers().empty());
  CHECK(gn.eps == 1e-5f);
  GroupNorm plain(GroupNormOptions(3, 6).affine(false).eps(1e-3f));
  CHECK(plain.named_parameters().empty());
  CHECK(plain.eps == 1e-3f);

  LayerNorm ln(LayerNormOptions({3, 4}));
  CHECK(ln.type_name() == "LayerNorm");
  p = ln.named_parameters();
  REQUIRE(p.size() == 2);
  CHECK(p[0].first == "weight");
  CHECK(p[1].first == "bias");
  CHECK(p[0].second.shape() == Shape{3, 4});
  CHECK(p[1].second.shape() == Shape{3, 4});
  for (float v : p[0].second.vec()) CHECK(v == 1.0f);
  for (float v : p[1].second.vec()) CHECK(v == 0.0f);
  CHECK(ln.named_buffers().empty());
  CHECK(LayerNorm(LayerNormOptions({5}).elementwise_affine(false)).named_parameters().empty());
}

TEST_CASE("group_norm, layer_norm and their layers refuse bad shapes, naming what they expected",
          "[norm][errors]") {
  Generator g(41);
  const Tensor x = randn({2, 6, 3, 3}, g);
  std::string e = error_of([&] { ops::group_norm(x, 4, Tensor(), Tensor()); });
  CHECK(e.find("group_norm") == 0);
  CHECK(e.find("num_groups 4") != std::string::npos);
  CHECK(e.find("C = 6") != std::string::npos);
  CHECK(e.find("[2, 6, 3, 3]") != std::string::npos);
  CHECK(error_of([&] { ops::group_norm(x, 0, Tensor(), Tensor()); }).find("num_groups 0") !=
        std::string::npos);
  e = error_of([&] { ops::group_norm(randn({6}, g), 1, Tensor(), Tensor()); });
  CHECK(e.find("group_norm: expected input [N, C, *]") == 0);
  CHECK(e.find("got shape [6]") != std::string::npos);
  e = error_of([&] { ops::group_norm(x, 3, randn({5}, g), Tensor()); });
  CHECK(e.find("group_norm: expected weight [6]") == 0);
  CHECK(e.find("got shape [5]") != std::string::npos);
  e = error_of([&] { ops::group_norm(x, 3, Tensor(), randn({6, 1}, g)); });
  CHECK(e.find("group_norm: expected bias [6]") == 0);
  CHECK(error_of([&] {
          ops::group_norm(x, 3, Tensor(), Tensor(), -1.0f);
        }).find("group_norm: expected eps >= 0") == 0);

  e = error_of([&] { ops::layer_norm(x, {3, 4}, Tensor(), Tensor()); });
  CHECK(e.find("layer_norm: expected input whose trailing dimensions are [3, 4]") == 0);
  CHECK(e.find("got shape [2, 6, 3, 3]") != std::string::npos);
  CHECK(error_of([&] {
          ops::layer_norm(x, {2, 6, 3, 3, 1}, Tensor(), Tensor());
        }).find("layer_norm: expected input whose trailing") == 0);
  CHECK(error_of([&] {
          ops::layer_norm(x, {}, Tensor(), Tensor());
        }).find("layer_norm: expected a normalized_shape of at least one dimension") == 0);
  e = error_of([&] { ops::layer_norm(x, {3, 3}, randn({9}, g), Tensor()); });
  CHECK(e.find("layer_norm: expected weight of shape [3, 3]") == 0);
  CHECK(e.find("got shape [9]") != std::string::npos);
  CHECK(error_of([&] {
          ops::layer_norm(x, {3}, Tensor(), randn({4}, g));
        }).find("layer_norm: expected bias of shape [3]") == 0);
  // A valid call does not throw: the checks above fail for their reasons.
  CHECK(error_of([&] { ops::layer_norm(x, {3, 3}, randn({3, 3}, g), Tensor()); }).empty());
  CHECK(error_of([&] { ops::group_norm(x, 3, randn({6}, g), randn({6}, g)); }).empty());

  e = error_of([] { GroupNorm(GroupNormOptions(4, 6)); });
  CHECK(e.find("GroupNorm: expected num_groups >= 1 dividing num_channels") == 0);
  CHECK(e.find("num_groups 4, num_channels 6") != std::string::npos);
  CHECK(!error_of([] { GroupNorm(GroupNormOptions(2, 6).eps(0.0f)); }).empty());
  GroupNorm gn(GroupNormOptions(2, 6));
  e = error_of([&] { gn(randn({2, 4, 3, 3}, g)); });
  CHECK(e == "GroupNorm(2, 6): expected input [N, 6, *], got [2, 4, 3, 3]");
  CHECK(!error_of([] { LayerNorm(LayerNormOptions(Shape{})); }).empty());
  CHECK(!error_of([] { LayerNorm(LayerNormOptions({3, 0})); }).empty());
  LayerNorm ln(LayerNormOptions({3, 4}));
  e = error_of([&] { ln(x); });
  CHECK(e == "LayerNorm([3, 4]): expected input [*, 3, 4], got [2, 6, 3, 3]");
}

// ---- the ResNets' --norm --------------------------------------------------------------------

TEST_CASE("resnet20 --norm: the layers each norm builds, under BatchNorm's names",
          "[norm][models]") {
  auto count = [](const Module& m) {
    int64_t n = 0;
    for (const Tensor& p : m.parameters()) n += p.numel();
    return n;
  };
  auto bn_model = std::dynamic_pointer_cast<CifarResNet>(create_model("resnet20", {}));
  REQUIRE(bn_model);
  CHECK(bn_model->bn == bn_model->norm);
  CHECK(count(*bn_model) == 272474);
  // The BN state names without the running buffers.
  std::vector<std::string> bn_params;
  for (const auto& [name, t] : bn_model->state_dict()) {
    if (name.find("running_") == std::string::npos) bn_params.push_back(name);
  }
  // Expected groups per GroupNorm, in module order (stem, then blocks; channels 16, 32, 64).
  struct Case {
    NormKind kind;
    int64_t gn_groups;
    std::vector<int64_t> groups_by_channels;  // for 16, 32 and 64 channels
  };
  for (const Case& c :
       {Case{NormKind::kGroup, 32, {16, 32, 32}}, Case{NormKind::kGroup, 8, {8, 8, 8}},
        Case{NormKind::kLayer, 32, {1, 1, 1}}}) {
    INFO("norm " << name_of(c.kind) << " gn_groups " << c.gn_groups);
    ModelOptions o;
    o.norm = c.kind;
    o.gn_groups = c.gn_groups;
    auto model = std::dynamic_pointer_cast<CifarResNet>(create_model("resnet20", o));
    REQUIRE(model);
    CHECK(!model->bn);
    CHECK(count(*model) == 272474);  // a gamma and a beta per channel, as BN
    std::vector<std::string> names;
    for (const auto& [name, t] : model->state_dict()) names.push_back(name);
    CHECK(names == bn_params);
    CHECK(model->named_buffers().empty());
    const auto gns = model->named_modules_of<GroupNorm>();
    CHECK(gns.size() == 21);  // the stem, 2 per block (9 blocks), 2 shortcuts
    CHECK(model->modules_of<BatchNorm>().empty());
    for (const auto& [name, gn] : gns) {
      INFO(name);
      const int64_t i = gn->num_channels == 16 ? 0 : gn->num_channels == 32 ? 1 : 2;
      CHECK(gn->num_groups == c.groups_by_channels[i]);
    }
  }
  ModelOptions none;
  none.norm = NormKind::kNone;
  auto model = create_model("resnet20", none);
  for (const auto& [name, t] : model->state_dict()) CHECK(name.find("bn") == std::string::npos);
  // Without the 2 x (16 + 2 x 3 x 16 + 2 x 3 x 32 + 2 x 3 x 64 + 32 + 64) gammas and betas.
  CHECK(count(*model) == 272474 - 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64 + 32 + 64));
  CHECK(model->modules_of<Identity>().size() == 21);
}

TEST_CASE("resnet --norm bn is the model it always was, bit for bit", "[norm][models]") {
  ModelOptions o;
  o.seed = 3;
  ModelOptions explicit_bn = o;
  explicit_bn.norm = NormKind::kBatch;
  explicit_bn.gn_groups = 8;  // ignored by bn
  auto a = create_model("resnet8", o), b = create_model("resnet8", explicit_bn);
  const NamedTensors sa = a->state_dict(), sb = b->state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    CHECK(sa[i].first == sb[i].first);
    CHECK(same_bits(sa[i].second.data(), sb[i].second.data(), sa[i].second.numel()));
  }
  CHECK(a->modules_of<BatchNorm>().size() == 9);
  // config.json of a default run has neither key (existing configs and checkpoints unchanged).
  const json j = train::config_to_json(train::TrainOptions{});
  CHECK(!j.contains("norm"));
  CHECK(!j.contains("gn_groups"));
}

TEST_CASE("a gn ResNet trains: every parameter gets a gradient, train = eval, no batch dependence",
          "[norm][models]") {
  ModelOptions o;
  o.seed = 4;
  o.norm = NormKind::kGroup;
  o.gn_groups = 4;
  auto model = create_model("resnet8", o);
  Generator g(5);
  const Tensor x = randn({3, 3, 32, 32}, g);
  model->train();
  Tensor logits = (*model)(x);
  ops::cross_entropy(logits, {1, 2, 3}).backward();
  for (const auto& [name, p] : model->named_parameters()) {
    INFO(name);
    REQUIRE(p.has_grad());
    double s = 0.0;
    for (int64_t i = 0; i < p.numel(); ++i) s += std::fabs(p.grad_data()[i]);
    CHECK(s > 0.0);
  }
  NoGradGuard no_grad;
  model->eval();
  CHECK(same_bits((*model)(x).data(), logits.data(), logits.numel()));
  // Image 1 alone: its logits to 1e-5 of the largest (Winograd groups images in chunks).
  const int64_t per = 3 * 32 * 32;
  const Tensor one({1, 3, 32, 32}, std::vector<float>(x.data() + per, x.data() + 2 * per));
  const Tensor y1 = (*model)(one);
  float big = 0.0f;
  for (int64_t k = 0; k < 10; ++k) big = std::max(big, std::fabs(logits.data()[10 + k]));
  for (int64_t k = 0; k < 10; ++k)
    CHECK(std::fabs(y1.data()[k] - logits.data()[10 + k]) <= 1e-5f * big);
}

TEST_CASE("the norm errors name gn_groups or norm", "[norm][models][errors]") {
  ModelOptions o;
  o.norm = NormKind::kGroup;
  o.gn_groups = 12;  // min(12, 16) = 12 does not divide 16
  std::string e = error_of([&] { create_model("resnet20", o); });
  CHECK(e.find("gn_groups 12 does not fit resnet20 of width 16") == 0);
  CHECK(e.find("12 does not divide 16") != std::string::npos);
  o.gn_groups = 24;  // 16 fits (16 groups), 32 does not
  CHECK(error_of([&] { create_model("resnet20", o); }).find("24 does not divide 32") !=
        std::string::npos);
  o.gn_groups = 0;
  CHECK(error_of([&] { create_model("resnet20", o); }).find("gn_groups must be >= 1") == 0);
  o.gn_groups = 64;  // min(64, C) = C on every stage of resnet20: InstanceNorm
  CHECK(error_of([&] { create_model("resnet20", o); }).empty());
  for (const char* name : {"cnn", "vgg11_bn", "vgg11", "airbench94"}) {
    for (NormKind k : {NormKind::kGroup, NormKind::kLayer, NormKind::kNone}) {
      ModelOptions m;
      m.norm = k;
      INFO(name << " " << name_of(k));
      e = error_of([&] { create_model(name, m); });
      CHECK(e.find("norm " + name_of(k) + " is not available for model " + name) == 0);
    }
  }
}

TEST_CASE("train-only bn with gn trains GroupNorm's gamma and beta, bn-init uniform draws them",
          "[norm][freeze]") {
  ModelOptions o;
  o.norm = NormKind::kGroup;
  o.bn_init = BnInit::kUniform;
  auto model = create_model("resnet8", o);
  bool some_not_one = false;
  for (GroupNorm* gn : model->modules_of<GroupNorm>()) {
    for (float v : gn->weight.vec()) {
      CHECK((v >= 0.0f && v < 1.0f));
      some_not_one = some_not_one || v != 1.0f;
    }
  }
  CHECK(some_not_one);
  optim::apply_train_only(*model, optim::TrainOnly::kBn, 0);
  int64_t trainable = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    const bool norm =
        name.find("bn") != std::string::npos || name.find("shortcut.1") != std::string::npos;
    INFO(name);
    CHECK(p.requires_grad() == norm);
    if (p.requires_grad()) trainable += p.numel();
  }
  // stem 16; blocks: 2 x 16, 2 x 32 + 32 (shortcut), 2 x 64 + 64 (shortcut).
  CHECK(trainable == 2 * (16 + 2 * 16 + 3 * 32 + 3 * 64));
  ModelOptions none;
  none.norm = NormKind::kNone;
  auto plain = create_model("resnet8", none);
  CHECK(error_of([&] {
          optim::apply_train_only(*plain, optim::TrainOnly::kBn, 0);
        }).find("the model has no normalization layer") != std::string::npos);
}

TEST_CASE("training options: norm and gn_groups in config.json only when set, bad combinations",
          "[norm][train]") {
  train::TrainOptions o;
  o.norm = NormKind::kGroup;
  o.gn_groups = 8;
  const json j = train::config_to_json(o);
  CHECK(j.at("norm") == "gn");
  CHECK(j.at("gn_groups") == 8);
  const train::TrainOptions back = train::config_from_json(j);
  CHECK(back.norm == NormKind::kGroup);
  CHECK(back.gn_groups == 8);
  o.gn_groups = 32;
  CHECK(!train::config_to_json(o).contains("gn_groups"));
  CHECK(train::model_options(back).norm == NormKind::kGroup);
  CHECK(train::model_options(back).gn_groups == 8);

  auto refused = [](const train::TrainOptions& t) {
    try {
      train::validate(t);
    } catch (const train::OptionError& e) {
      return e.param;
    }
    return std::string();
  };
  train::TrainOptions t;
  CHECK(refused(t).empty());
  t.gn_groups = 8;  // without norm gn
  CHECK(refused(t) == "gn_groups");
  t.norm = NormKind::kGroup;
  CHECK(refused(t).empty());
  t.bn_stats = train::BnStatsMode::kRunning;
  CHECK(refused(t) == "bn_stats");
  t.bn_stats = train::BnStatsMode::kBatch;
  t.bn_sync = train::BnSync::kGlobal;
  CHECK(refused(t) == "bn_sync");
  t.bn_sync = train::BnSync::kNone;
  t.bn_group_size = 16;
  CHECK(refused(t) == "bn_group_size");
  t.bn_group_size = 0;
  t.train_only = optim::TrainOnly::kBn;
  t.bn_init = BnInit::kUniform;
  CHECK(refused(t).empty());  // gn has a gamma and a beta per channel
  t.norm = NormKind::kNone;
  t.gn_groups = 32;
  CHECK(refused(t) == "train_only");
  t.train_only = optim::TrainOnly::kAll;
  CHECK(refused(t) == "bn_init");
  t.bn_init = BnInit::kFixed;
  CHECK(refused(t).empty());
  CHECK(app::with_flag_names("gn_groups sets GroupNorm's groups") ==
        "--gn-groups sets GroupNorm's groups");
  CHECK(app::with_flag_names("norm gn is not available") == "--norm gn is not available");
}

TEST_CASE("a gn run's checkpoint is rebuilt with GroupNorm by eval, and --norm reaches the CLI",
          "[norm][train][cli]") {
  train::TrainOptions o = minidl::testing::small_options("norm_gn", 1, 256);
  o.norm = NormKind::kGroup;
  o.gn_groups = 8;
  o.limit_test = 200;
  minidl::testing::fit(o);
  const std::string ck = o.out + "/model.safetensors";
  Checkpoint meta;
  auto model = train::load_model(ck, &meta);
  CHECK(model->modules_of<GroupNorm>().size() == 9);
  CHECK(model->modules_of<BatchNorm>().empty());
  for (GroupNorm* gn : model->modules_of<GroupNorm>()) CHECK(gn->num_groups == 8);
  const train::TrainOptions saved = train::read_config(o.out + "/config.json");
  CHECK(saved.norm == NormKind::kGroup);
  CHECK(saved.gn_groups == 8);
  // eval from the command line reads the same checkpoint.
  auto [status, out] = minidl::testing::run_cli(
      "eval --checkpoint " + ck + " --data " + minidl::testing::data_dir() + " --limit 100 --json");
  INFO(out);
  CHECK(status == 0);
  CHECK(out.find("\"accuracy\"") != std::string::npos);
  // Bad combinations: one line naming the flag.
  std::tie(status, out) =
      minidl::testing::run_cli("train --norm gn --gn-groups 12 --limit-train 64 --out " + o.out +
                               "_x --data " + minidl::testing::data_dir());
  CHECK(status == 1);
  CHECK(out.find("minidl: error: --gn-groups 12 does not fit resnet20") != std::string::npos);
  std::tie(status, out) = minidl::testing::run_cli("train --gn-groups 8 --out " + o.out +
                                                   "_x --data " + minidl::testing::data_dir());
  CHECK(status == 1);
  CHECK(out.find("minidl: error: --gn-groups sets GroupNorm's groups: it takes norm gn") !=
        std::string::npos);
  std::tie(status, out) = minidl::testing::run_cli("train --norm gn --model cnn --out " + o.out +
                                                   "_x --data " + minidl::testing::data_dir());
  CHECK(status == 1);
  CHECK(out.find("minidl: error: --norm gn is not available for model cnn") != std::string::npos);
  std::tie(status, out) =
      minidl::testing::run_cli("train --norm gn --bn-stats running --out " + o.out + "_x --data " +
                               minidl::testing::data_dir());
  CHECK(status == 1);
  CHECK(out.find("minidl: error: --bn-stats running") != std::string::npos);
  std::tie(status, out) = minidl::testing::run_cli("train --norm ln --resume " + o.out);
  CHECK(status == 1);
  CHECK(out.find("minidl: error: --norm ln: the run in " + o.out + " was trained with norm gn") !=
        std::string::npos);
  std::tie(status, out) = minidl::testing::run_cli("train --norm batch");
  CHECK(status == 1);
  CHECK(out.find("--norm") != std::string::npos);
  std::filesystem::remove_all(o.out);
  std::filesystem::remove_all(o.out + "_x");
}
