// Every model of the zoo (layers/models/registry.hpp): built by name, compared with the same
// architecture written in torch.nn (tests/fixtures/model_zoo.json, made by
// scripts/make_model_zoo_fixture.py: state_dict names, shapes and parameter count), then a
// forward, a backward and a state_dict round trip through a safetensors file.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "core/safetensors.hpp"
#include "gradcheck.hpp"
#include "layers/batch_norm.hpp"
#include "layers/models/registry.hpp"
#include "test_util.hpp"

using namespace minidl;

TEST_CASE("every registered model matches its torch.nn twin and round-trips", "[models]") {
  std::ifstream f(std::string(MINIDL_FIXTURE_DIR) + "/model_zoo.json");
  REQUIRE(f);
  const nlohmann::json zoo = nlohmann::json::parse(f)["models"];
  REQUIRE(zoo.size() == 13);
  // Every registered name pattern has at least one model in the fixture.
  for (const std::string& pattern : model_patterns()) {
    const std::string stem = pattern.substr(0, pattern.find_first_of("<[ "));
    bool covered = false;
    for (auto& [name, entry] : zoo.items()) covered = covered || name.rfind(stem, 0) == 0;
    INFO("pattern " << pattern);
    CHECK(covered);
  }
  const std::string dir = minidl::testing::fresh_dir("models");
  std::filesystem::create_directories(dir);
  for (auto& [name, entry] : zoo.items()) {
    INFO("model " << name);
    ModelOptions o;
    o.seed = 5;
    auto model = create_model(name, o);
    // Names, shapes and the parameter count, as torch.nn has them.
    const NamedTensors state = model->state_dict();
    REQUIRE(state.size() == entry["state"].size());
    for (size_t i = 0; i < state.size(); ++i) {
      CHECK(state[i].first == entry["state"][i][0].get<std::string>());
      CHECK(state[i].second.shape() == entry["state"][i][1].get<Shape>());
    }
    int64_t params = 0;
    for (const Tensor& p : model->parameters()) params += p.numel();
    CHECK(params == entry["parameters"].get<int64_t>());
    // Forward and backward in train mode: logits [2, 10], a gradient for every parameter that
    // learns, none for a frozen one (airbench94's whitening weight and gammas).
    Generator gen(1);
    Tensor x = minidl::testing::randn({2, 3, 32, 32}, gen);
    model->train();
    Tensor logits = (*model)(x);
    REQUIRE(logits.shape() == Shape{2, 10});
    ops::cross_entropy(logits, {3, 7}).backward();
    for (const auto& [pname, p] : model->named_parameters()) {
      INFO("parameter " << pname);
      CHECK(p.has_grad() == p.requires_grad());
    }
    // state_dict -> safetensors -> another model (other seed): equal tensors and equal logits.
    const std::string path = dir + "/" + name + ".safetensors";
    save_safetensors(path, model->state_dict(), {{"model", name}});
    ModelOptions other;
    other.seed = 6;
    auto copy = create_model(name, other);
    copy->load_state_dict(load_safetensors(path).tensors);
    const NamedTensors a = model->state_dict(), b = copy->state_dict();
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(std::memcmp(a[i].second.data(), b[i].second.data(),
                        sizeof(float) * a[i].second.numel()) == 0);
    }
    NoGradGuard no_grad;
    model->eval();
    copy->eval();
    const Tensor y1 = (*model)(x), y2 = (*copy)(x);
    CHECK(std::memcmp(y1.data(), y2.data(), sizeof(float) * y1.numel()) == 0);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("zero-residual gamma init zeroes each block's bn2 and nothing else", "[models]") {
  // resnet20: 9 blocks, bn2 of 16, 32 and 64 channels (3 blocks each); the stem's bn and every
  // bn1 and shortcut BN keep gamma = 1. Every beta is 0.
  ModelOptions o;
  o.bn_init = BnInit::kZeroResidual;
  auto model = create_model("resnet20", o);
  int64_t zeros = 0, ones = 0, layers_zeroed = 0;
  for (auto& [name, bn] : model->named_modules_of<BatchNorm>()) {
    const bool branch_end = name.size() > 4 && name.substr(name.size() - 4) == ".bn2";
    const float* w = bn->weight.data();
    for (int64_t c = 0; c < bn->weight.numel(); ++c) {
      INFO(name << " channel " << c);
      REQUIRE(w[c] == (branch_end ? 0.0f : 1.0f));
      REQUIRE(bn->bias.data()[c] == 0.0f);
      (branch_end ? zeros : ones) += 1;
    }
    layers_zeroed += branch_end;
  }
  CHECK(layers_zeroed == 9);
  CHECK(zeros == 3 * (16 + 32 + 64));
  CHECK(ones == 16 + 3 * (16 + 32 + 64) + 32 + 64);  // stem, bn1s, two shortcut BNs
}
