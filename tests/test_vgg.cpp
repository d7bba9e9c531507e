// VGG-A (layers/models/vgg.hpp): torchvision's state_dict names and shapes, shapes and
// parameter counts of the registered variants, the refused names, initialization, a training
// step, and batch independence in eval mode.
// The fixture tests/fixtures/vgg11_bn_features.json comes from scripts/make_vgg_fixture.py
// (torchvision's make_layers(cfgs["A"]) reproduced in torch.nn; rerun with /usr/bin/python3).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "distribution.hpp"
#include "gradcheck.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/vgg.hpp"
#include "optim/sgd.hpp"

#ifndef MINIDL_FIXTURE_DIR
#error "MINIDL_FIXTURE_DIR must be defined (the tests/fixtures directory, as a string literal)"
#endif

using namespace minidl;
using minidl::testing::randn;

namespace {

using NameShape = std::pair<std::string, Shape>;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// "name [shape]" per entry: what the comparisons print when they fail.
std::vector<std::string> lines(const std::vector<NameShape>& entries) {
  std::vector<std::string> out;
  for (const auto& [n, shape] : entries) out.push_back(n + " " + shape_str(shape));
  return out;
}

/// The fixture's [name, shape] list under `key` ("vgg11_bn" or "vgg11").
std::vector<NameShape> torchvision_features(const std::string& key) {
  const std::string path = std::string(MINIDL_FIXTURE_DIR) + "/vgg11_bn_features.json";
  std::ifstream in(path);
  if (!in) FAIL("cannot open fixture " << path);
  nlohmann::json doc;
  in >> doc;
  std::vector<NameShape> out;
  for (const auto& e : doc.at(key)) {
    out.emplace_back(e.at(0).get<std::string>(), e.at(1).get<Shape>());
  }
  return out;
}

std::vector<NameShape> names_and_shapes(const NamedTensors& tensors) {
  std::vector<NameShape> out;
  for (const auto& [n, t] : tensors) out.emplace_back(n, t.shape());
  return out;
}

int64_t count(const NamedTensors& tensors) {
  int64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.numel();
  return n;
}

ModelOptions seeded(uint64_t seed, BnInit bn_init = BnInit::kFixed) {
  ModelOptions o;
  o.seed = seed;
  o.bn_init = bn_init;
  return o;
}

}  // namespace

TEST_CASE("vgg11_bn and vgg11 have torchvision's features names and shapes", "[vgg]") {
  SECTION("vgg11_bn: the same tensors but the conv biases and num_batches_tracked") {
    const std::vector<NameShape> tv = torchvision_features("vgg11_bn");
    REQUIRE(tv.size() == 8 * 2 + 8 * 5);  // 8 convs (weight, bias), 8 BNs (5 entries each)
    auto model = create_model("vgg11_bn", {});
    std::vector<NameShape> ours, classifier;
    for (auto& e : names_and_shapes(model->state_dict())) {
      (e.first.rfind("features.", 0) == 0 ? ours : classifier).push_back(e);
    }
    // The conv indices are those whose weight is 4-d; their biases are what minidl drops.
    std::set<std::string> conv_biases;
    for (const auto& [name, shape] : tv) {
      if (ends_with(name, ".weight") && shape.size() == 4) {
        conv_biases.insert(name.substr(0, name.size() - 6) + "bias");
      }
    }
    CHECK(conv_biases.size() == 8);
    std::vector<NameShape> tv_kept, tv_dropped;
    for (const auto& e : tv) {
      const bool bias = conv_biases.count(e.first) > 0;
      const bool tracked = ends_with(e.first, ".num_batches_tracked");
      if (tracked) CHECK(e.second == Shape{});  // a scalar
      (bias || tracked ? tv_dropped : tv_kept).push_back(e);
    }
    CHECK(tv_dropped.size() == 16);        // exactly the 8 conv biases and 8 num_batches_tracked
    CHECK(lines(ours) == lines(tv_kept));  // everything else: same names, shapes and order
    CHECK(lines(classifier) ==
          std::vector<std::string>{"classifier.weight [10, 512]", "classifier.bias [10]"});
  }
  SECTION("vgg11: exactly torchvision's features") {
    auto model = create_model("vgg11", {});
    std::vector<NameShape> ours = names_and_shapes(model->state_dict());
    REQUIRE(ours.size() == 16 + 2);
    CHECK(lines({ours.begin(), ours.end() - 2}) == lines(torchvision_features("vgg11")));
    CHECK(lines({ours.end() - 2, ours.end()}) ==
          std::vector<std::string>{"classifier.weight [10, 512]", "classifier.bias [10]"});
  }
}

TEST_CASE("vgg11 variants give 10 logits per 32x32 image and the documented parameter counts",
          "[vgg]") {
  // name, parameters, buffer values (vgg.hpp; computed in PyTorch from the same layers).
  const std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>> cases = {
      {"vgg11", 9225610, 0, 512},
      {"vgg11_bn", 9228362, 5504, 512},
      {"vgg11_w4", 578410, 0, 128},
      {"vgg11_bn_w4", 579098, 1376, 128},
  };
  Generator gen(3);
  const Tensor x = randn({2, 3, 32, 32}, gen);
  for (const auto& [name, params, buffers, width] : cases) {
    INFO(name);
    auto model = create_model(name, {});
    CHECK(count(model->named_parameters()) == params);
    CHECK(count(model->named_buffers()) == buffers);
    auto vgg = std::dynamic_pointer_cast<VGG>(model);
    REQUIRE(vgg);
    CHECK(vgg->classifier->weight.shape() == Shape{10, width});
    NoGradGuard no_grad;
    for (bool training : {true, false}) {
      model->train(training);
      const Tensor y = (*model)(x);
      CHECK(y.shape() == Shape{2, 10});
      CHECK(std::all_of(y.vec().begin(), y.vec().end(), [](float v) { return std::isfinite(v); }));
    }
    CHECK_THROWS_WITH((*model)(randn({2, 3, 64, 64}, gen)),
                      Catch::Contains("expected input [N, 3, 32, 32], got [2, 3, 64, 64]"));
  }
  // The fused BN-ReLU forward equals the unfused Sequential, in both modes.
  auto model =
      std::dynamic_pointer_cast<VGG>(create_model("vgg11_bn_w4", seeded(1, BnInit::kUniform)));
  NoGradGuard no_grad;
  for (bool training : {true, false}) {
    model->train(training);
    const Tensor fused = (*model)(x);
    const Tensor plain = (*model->classifier)(ops::flatten(model->features->forward(x)));
    for (int64_t i = 0; i < fused.numel(); ++i) {
      CHECK(fused.data()[i] == Approx(plain.data()[i]).epsilon(1e-5).margin(1e-6));
    }
  }
}

TEST_CASE("bad VGG names are refused with the allowed choices", "[vgg][errors]") {
  CHECK_THROWS_AS(create_model("vgg11_w3", {}), std::invalid_argument);
  CHECK_THROWS_WITH(create_model("vgg11_w3", {}),
                    Catch::Contains("model \"vgg11_w3\"") &&
                        Catch::Contains("must divide 64 (the narrowest width) exactly: "
                                        "1, 2, 4, 8, 16, 32 or 64"));
  CHECK_THROWS_WITH(create_model("vgg11_bn_w128", {}),
                    Catch::Contains("model \"vgg11_bn_w128\"") && Catch::Contains("divide 64"));
  CHECK_THROWS_WITH(create_model("vgg11_w128", {}), Catch::Contains("model \"vgg11_w128\""));
  CHECK_THROWS_WITH(create_model("vgg11_w0", {}), Catch::Contains("divide 64"));
  CHECK_THROWS_WITH(create_model("vgg11_w04", {}), Catch::Contains("divide 64"));
  CHECK_THROWS_WITH(create_model("vgg11_w99999999999999999999999", {}),
                    Catch::Contains("divide 64"));
  CHECK_THROWS_WITH(create_model("vgg13", {}),
                    Catch::Contains("unknown model \"vgg13\": only VGG-A (11 weight layers)") &&
                        Catch::Contains("vgg11_bn_w<k>"));
  CHECK_THROWS_WITH(create_model("vgg13_bn", {}), Catch::Contains("only VGG-A"));
  CHECK_THROWS_WITH(create_model("vgg11bn", {}), Catch::Contains("unknown model \"vgg11bn\""));
  // The smallest and largest divisors build.
  CHECK(create_model("vgg11_w1", {})->state_dict().size() == 16 + 2);
  CHECK(create_model("vgg11_bn_w64", {})->state_dict()[0].second.shape() == Shape{1, 3, 3, 3});
  Generator gen(0);
  CHECK_THROWS_AS(VGG(3, true, 10, gen), std::invalid_argument);
}

TEST_CASE("VGG initialization is torchvision's and shared by the BN and no-BN models", "[vgg]") {
  auto bn = std::dynamic_pointer_cast<VGG>(create_model("vgg11_bn_w4", seeded(5)));
  auto plain = std::dynamic_pointer_cast<VGG>(create_model("vgg11_w4", seeded(5)));
  REQUIRE(bn);
  REQUIRE(plain);
  // Same seed: the same conv weights in the same order, and the same classifier.
  std::vector<Tensor> bn_convs, plain_convs;
  for (auto& [n, t] : bn->named_parameters())
    if (t.dim() == 4) bn_convs.push_back(t);
  for (auto& [n, t] : plain->named_parameters()) {
    if (t.dim() == 4) plain_convs.push_back(t);
    if (ends_with(n, ".bias") && n != "classifier.bias") {
      for (float v : t.vec()) CHECK(v == 0.0f);  // plain convs' biases: 0
    }
  }
  REQUIRE(bn_convs.size() == 8);
  REQUIRE(plain_convs.size() == 8);
  for (size_t i = 0; i < 8; ++i) CHECK(bn_convs[i].vec() == plain_convs[i].vec());
  CHECK(bn->classifier->weight.vec() == plain->classifier->weight.vec());
  // Conv weights N(0, 2 / fan_out), fan_out = out_channels * 9 (features.25: 128 x 128 x 3 x 3).
  auto variance = [](const Tensor& t) {
    double s = 0, ss = 0;
    for (float v : t.vec()) {
      s += v;
      ss += double(v) * v;
    }
    const double m = s / t.numel();
    return ss / t.numel() - m * m;
  };
  CHECK(variance(bn_convs[7]) == Approx(2.0 / (128 * 9)).epsilon(0.05));
  CHECK(variance(bn_convs[1]) == Approx(2.0 / (32 * 9)).epsilon(0.05));  // 32 x 16: not fan_in
  CHECK(variance(bn->classifier->weight) == Approx(0.01 * 0.01).epsilon(0.2));
  for (float v : bn->classifier->bias.vec()) CHECK(v == 0.0f);
  for (auto& [n, t] : bn->named_parameters()) {
    if (t.dim() != 1 || n == "classifier.bias") continue;
    const float want = ends_with(n, ".weight") ? 1.0f : 0.0f;  // BN gamma 1, beta 0
    for (float v : t.vec()) CHECK(v == want);
  }
  // bn_init "uniform": gamma ~ U[0, 1), drawn after the conv weights, which stay the same.
  auto u = std::dynamic_pointer_cast<VGG>(create_model("vgg11_bn_w4", seeded(5, BnInit::kUniform)));
  CHECK(u->state_dict()[1].first == "features.1.weight");  // the first BN's gamma
  // Every BN's gamma (688 channels) together: U[0, 1) (range, ends, mean, Kolmogorov-Smirnov).
  std::vector<float> gammas;
  for (BatchNorm* b : u->modules_of<BatchNorm>())
    gammas.insert(gammas.end(), b->weight.vec().begin(), b->weight.vec().end());
  CHECK(gammas.size() == 688);
  minidl::testing::check_uniform01(gammas);
  CHECK(u->state_dict()[0].second.vec() == bn_convs[0].vec());
  // Another seed, other weights.
  auto other = create_model("vgg11_bn_w4", seeded(6));
  CHECK(other->state_dict()[0].second.vec() != bn_convs[0].vec());
}

TEST_CASE("a training step of vgg11_bn_w4 on 8 random images", "[vgg][train]") {
  auto model = create_model("vgg11_bn_w4", seeded(2));
  model->train();
  Generator gen(8);
  const Tensor x = randn({8, 3, 32, 32}, gen);
  std::vector<int32_t> labels;
  for (int i = 0; i < 8; ++i) labels.push_back(static_cast<int32_t>(gen.randint(10)));
  std::map<std::string, Storage> before;
  for (auto& [n, t] : model->state_dict()) before[n] = t.vec();
  optim::SGDOptions so;
  so.lr = 0.05f;
  so.momentum = 0.9f;
  optim::SGD opt(model->parameters(), so);
  Tensor loss = ops::cross_entropy((*model)(x), labels);
  const float l = loss.item();
  CHECK(std::isfinite(l));
  CHECK(l == Approx(std::log(10.0f)).margin(0.5));  // logits near 0 at init (classifier std 0.01)
  opt.zero_grad();
  loss.backward();
  opt.step();
  for (auto& [n, t] : model->state_dict()) {
    INFO(n);
    CHECK(std::all_of(t.vec().begin(), t.vec().end(), [](float v) { return std::isfinite(v); }));
    CHECK(t.vec() != before[n]);  // every parameter learned, every running statistic moved
  }
  CHECK(std::isfinite(ops::cross_entropy((*model)(x), labels).item()));
}

TEST_CASE("vgg11_bn_w4 in eval mode: an image's logits alone equal those inside a batch",
          "[vgg][bn]") {
  auto model = create_model("vgg11_bn_w4", seeded(4, BnInit::kUniform));
  Generator gen(9);
  const Tensor batch = randn({6, 3, 32, 32}, gen, 1.5f, 0.2f);
  {
    NoGradGuard no_grad;
    model->train();
    for (int i = 0; i < 3; ++i) (*model)(randn({8, 3, 32, 32}, gen, 1.5f, 0.2f));  // running stats
    model->eval();
    const Tensor all = (*model)(batch);
    for (int64_t i = 0; i < 6; ++i) {
      Tensor one({1, 3, 32, 32});
      std::copy(batch.data() + i * 3072, batch.data() + (i + 1) * 3072, one.mutable_vec().begin());
      const Tensor alone = (*model)(one);
      double diff = 0, norm = 0;
      for (int64_t k = 0; k < 10; ++k) {
        const double a = alone.data()[k], b = all.data()[i * 10 + k];
        diff = std::max(diff, std::abs(a - b));
        norm = std::max(norm, std::abs(b));
      }
      INFO("image " << i << ": max |alone - batch| " << diff << ", max |logit| " << norm);
      CHECK(norm > 0.0);
      CHECK(diff <= 1e-5 * norm);  // relative to the logits (about 0.01: classifier std 0.01)
    }
  }
}
