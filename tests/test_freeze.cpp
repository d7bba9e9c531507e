// Freezing (--train-only), frozen BN statistics (--bn-stats running) and BN recalibration.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "apps/commands.hpp"
#include "core/ops.hpp"
#include "core/safetensors.hpp"
#include "data/loader.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/resnet.hpp"
#include "layers/recalibrate.hpp"
#include "test_util.hpp"

using minidl::testing::data_dir;

using namespace minidl;
namespace fs = std::filesystem;

/// Trains resnet8 for a few steps with --train-only `mode`; returns (initial, final) state.
static std::pair<std::map<std::string, Tensor>, std::map<std::string, Tensor>> train_mode(
    const std::string& mode, const std::string& bn_stats = "batch") {
  app::TrainConfig c = minidl::testing::small_config("freeze_" + mode + "_" + bn_stats, 1, 256);
  c.limit_test = 100;
  c.seed = 21;
  c.weight_decay = 5e-4f;  // frozen tensors must not decay either
  c.train_only = mode;
  c.bn_stats = bn_stats;
  app::run_train(c);
  ModelOptions o;
  o.seed = c.seed;
  std::map<std::string, Tensor> init, trained;
  for (auto& [n, t] : create_model("resnet8", o)->state_dict()) init[n] = t;
  for (auto& [n, t] : load_safetensors(c.out + "/model.safetensors").tensors) trained[n] = t;
  REQUIRE(init.size() == trained.size());
  return {init, trained};
}

static bool is_bn_param(const std::string& n) {
  const bool bn_module = n.rfind("bn", 0) == 0 || n.find(".bn") != std::string::npos ||
                         n.find("shortcut.1.") != std::string::npos;
  auto ends = [&](const std::string& s) {
    return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
  };
  const bool param = ends(".weight") || ends(".bias");
  return bn_module && param;
}
static bool is_fc(const std::string& n) { return n.rfind("fc.", 0) == 0; }
static bool is_buffer(const std::string& n) { return n.find("running_") != std::string::npos; }
static int64_t changed(const Tensor& a, const Tensor& b) {
  int64_t k = 0;
  for (int64_t i = 0; i < a.numel(); ++i) k += a.data()[i] != b.data()[i];
  return k;
}

TEST_CASE("train-only modes train exactly what they name and frozen tensors stay bit for bit",
          "[freeze][slow]") {
  for (const std::string mode : {"bn", "fc", "bn+fc", "all"}) {
    auto [init, trained] = train_mode(mode);
    for (auto& [name, t0] : init) {
      if (is_buffer(name)) continue;  // statistics are not parameters
      const bool learns = mode == "all" || ((mode == "bn" || mode == "bn+fc") && is_bn_param(name)) ||
                          ((mode == "fc" || mode == "bn+fc") && is_fc(name));
      INFO("mode " << mode << ", tensor " << name);
      const int64_t k = changed(t0, trained.at(name));
      if (learns) {
        CHECK(k > 0);
        CHECK(k >= t0.numel() * 9 / 10);  // (almost) every element moved
      } else {
        CHECK(k == 0);
      }
    }
  }
}

TEST_CASE("train-only random-per-channel trains two conv weights per output channel",
          "[freeze][slow]") {
  auto [init, trained] = train_mode("random-per-channel");
  int64_t conv_changed = 0, bn_params = 0;
  for (auto& [name, t0] : init) {
    if (is_buffer(name)) continue;
    const int64_t k = changed(t0, trained.at(name));
    INFO(name);
    if (is_bn_param(name)) {
      bn_params += t0.numel();
      CHECK(k == 0);
    } else if (is_fc(name)) {
      CHECK(k == 0);
    } else {  // a conv weight [C_out, C_in, K, K]
      const int64_t per_out = t0.numel() / t0.size(0);
      for (int64_t o = 0; o < t0.size(0); ++o) {
        int64_t ko = 0;
        for (int64_t i = 0; i < per_out; ++i)
          ko += t0.data()[o * per_out + i] != trained.at(name).data()[o * per_out + i];
        CHECK(ko == 2);
      }
      conv_changed += k;
    }
  }
  CHECK(conv_changed == bn_params);  // as many as BN's gamma and beta
}

TEST_CASE("bn-stats running freezes the statistics and not the parameters", "[freeze][slow]") {
  auto [init, trained] = train_mode("all", "running");
  for (auto& [name, t0] : init) {
    INFO(name);
    if (is_buffer(name)) CHECK(changed(t0, trained.at(name)) == 0);
    if (is_bn_param(name)) CHECK(changed(t0, trained.at(name)) > 0);
  }
  auto [init2, trained2] = train_mode("bn", "batch");  // frozen parameters, moving statistics
  CHECK(changed(init2.at("bn.running_mean"), trained2.at("bn.running_mean")) > 0);
}

TEST_CASE("recalibrated BN statistics equal a direct computation over the data",
          "[bn][recalibrate]") {
  data::Dataset ds = data::load_cifar10(data_dir(), true, 300);
  ModelOptions o;
  o.seed = 4;
  o.bn_init = "uniform";
  auto model = std::dynamic_pointer_cast<CifarResNet>(create_model("resnet8", o));
  REQUIRE(model);
  const int layers = recalibrate_batch_norm(*model, [&](const std::function<void(const Tensor&)>& visit) {
    for (int64_t b = 0; b < ds.size(); b += 128) visit(data::to_tensor(ds, b, std::min<int64_t>(128, ds.size() - b)));
  });
  CHECK(layers == 7 + 2);  // stem + 3 blocks x 2 + 2 shortcuts
  // Direct: the inputs of bn, blocks.0.bn1 and blocks.0.bn2 over all 300 images at once, with the
  // recalibrated statistics in the layers before them (inference mode).
  Tensor x = data::to_tensor(ds, 0, ds.size());
  auto* block = dynamic_cast<BasicBlock*>(model->blocks->children()[0].second.get());
  REQUIRE(block);
  Tensor in_bn = (*model->conv)(x);
  Tensor in_bn1 = (*block->conv1)(ops::relu((*model->bn)(in_bn)));
  Tensor in_bn2 = (*block->conv2)(ops::relu((*block->bn1)(in_bn1)));
  for (auto [t, bn] : {std::pair{in_bn, model->bn.get()}, std::pair{in_bn1, block->bn1.get()},
                       std::pair{in_bn2, block->bn2.get()}}) {
    const int64_t N = t.size(0), C = t.size(1), S = t.size(2) * t.size(3);
    for (int64_t c = 0; c < C; ++c) {
      double s = 0, ss = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) s += t.data()[(n * C + c) * S + i];
      const double mean = s / (N * S);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) {
          const double d = t.data()[(n * C + c) * S + i] - mean;
          ss += d * d;
        }
      const double var = ss / (N * S - 1);
      INFO("channel " << c);
      CHECK(std::abs(bn->running_mean.data()[c] - mean) <= 1e-5 * (1 + std::abs(mean)));
      CHECK(std::abs(bn->running_var.data()[c] - var) <= 1e-5 * (1 + var));
    }
  }
}

TEST_CASE("experiment bn-only writes a table that matches its checkpoints", "[freeze][experiment][slow]") {
  app::ExperimentConfig e;
  e.data = data_dir();
  e.out = minidl::testing::fresh_dir("experiment");
  e.model = "resnet8";
  e.epochs = 1;
  e.limit_train = 256;
  e.limit_test = 200;
  e.variants = {"bn", "fc"};
  e.quiet = true;
  app::run_experiment(e);
  REQUIRE(fs::exists(e.out + "/results.md"));
  std::ifstream csv(e.out + "/results.csv");
  REQUIRE(csv);
  std::string line;
  std::getline(csv, line);
  CHECK(line ==
        "variant,trained_parameters,train_accuracy,test_accuracy,wall_seconds,images_per_second,"
        "gamma_below_0.05");
  // resnet8's BN parameters and the output layer's (64 * 10 + 10), counted from the model.
  int64_t bn_params = 0;
  for (auto& [n, t] : create_model("resnet8", {})->state_dict())
    if (!is_buffer(n) && is_bn_param(n)) bn_params += t.numel();
  REQUIRE(bn_params == 672);
  const std::map<std::string, int64_t> expected_params = {{"bn", bn_params}, {"fc", 650}};
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    REQUIRE(f.size() == 7);
    const std::string& v = f[0];
    INFO("variant " << v);
    CHECK(std::stoll(f[1]) == expected_params.at(v));
    // The table's test accuracy is what eval gives on the saved checkpoint.
    app::EvalConfig ev;
    ev.checkpoint = e.out + "/" + v + "/model.safetensors";
    ev.data = e.data;
    ev.limit = e.limit_test;
    ev.json = true;
    CHECK(std::abs(app::run_eval(ev) - std::stod(f[3])) < 1e-4);
    // The gamma statistic is the fraction of gammas.csv rows with |gamma| < 0.05.
    std::ifstream g(e.out + "/" + v + "/gammas.csv");
    std::string gl;
    std::getline(g, gl);
    int64_t n = 0, off = 0, ones = 0;
    while (std::getline(g, gl)) {
      const float gamma = std::stof(gl.substr(gl.rfind(',') + 1));
      ++n;
      off += std::fabs(gamma) < 0.05f;
      ones += gamma == 1.0f;
    }
    CHECK(n == bn_params / 2);
    CHECK(std::abs(std::stod(f[6]) - static_cast<double>(off) / n) < 1e-4);
    if (v == "fc") CHECK(ones == n);  // frozen gammas keep their init, 1
    if (v == "bn") CHECK(ones == 0);  // every learned gamma moved
  }
  CHECK(rows == 2);

  app::ExperimentConfig bad = e;
  bad.recipe = "paper";
  CHECK_THROWS_WITH(app::run_experiment(bad), Catch::Contains("--recipe"));
}
