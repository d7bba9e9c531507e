// `minidl train --recipe airbench94` end to end against PyTorch: 15 steps of the recipe on the
// first 256 training images (batches of 64, 3.75 epochs, seed 5), run by the Trainer, and
// the same steps run by PyTorch from the same initial weights on the same augmented batches
// (tests/fixtures/airbench94_recipe.json, made by scripts/make_airbench_fixture.py, whose
// docstring says what it runs and the one ordering detail in which it departs from
// airbench94.py). The comparison covers everything the recipe puts together and the unit tests
// check one by one: the whitening init, the hyperparameter conversion to minidl's mean loss,
// the parameter groups, the schedule, label smoothing, the whitening bias freezing after epoch
// 3, the lookahead updates and their final EMA, BN's running statistics, and TTA level 2.
//
// The hidden case "[.airbench-dump]" writes what the fixture script needs from minidl: the
// initial state_dict and the loader's plan of every epoch.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "apps/cli.hpp"
#include "experiments/bn_only.hpp"
#include "train/trainer.hpp"
#include "train/loop.hpp"
#include "core/autograd.hpp"
#include "core/safetensors.hpp"
#include "data/cifar10.hpp"
#include "data/loader.hpp"
#include "layers/models/airbench.hpp"
#include "layers/models/registry.hpp"
#include "test_util.hpp"

using namespace minidl;
using nlohmann::json;

#ifndef MINIDL_FIXTURE_DIR
#error "MINIDL_FIXTURE_DIR must be defined (the tests/fixtures directory, as a string literal)"
#endif

namespace {

constexpr uint64_t kSeed = 5;
constexpr int64_t kTrain = 256, kBatch = 64, kTest = 16;
constexpr double kEpochs = 3.75;  // 4 batches per epoch: 15 steps

train::TrainOptions short_recipe(const std::string& out) {
  train::TrainOptions c = train::airbench94_options(kBatch, kEpochs);
  c.data = minidl::testing::data_dir();
  c.out = out;
  c.seed = kSeed;
  c.limit_train = kTrain;
  c.limit_test = kTest;
  c.tta = 2;
  return c;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return json::parse(in);
}

/// max_i |a_i - b_i| / max_i |b_i|: the error relative to the reference's scale.
double scaled_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double err = 0.0, scale = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return scale > 0 ? err / scale : err;
}

std::vector<float> values(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

}  // namespace

TEST_CASE("airbench94 recipe: the inputs of scripts/make_airbench_fixture.py", "[.airbench-dump]") {
  const char* dir = std::getenv("MINIDL_DUMP_DIR");
  if (!dir || !*dir) FAIL("set MINIDL_DUMP_DIR to the directory to write into");
  ModelOptions mo;
  mo.seed = kSeed;  // as the Trainer creates its model
  save_safetensors(std::string(dir) + "/init.safetensors",
                   create_model("airbench94", mo)->state_dict());
  const data::LoaderOptions lo = train::loader_options(short_recipe(""), kTrain);
  json epochs = json::array();
  for (int64_t e = 0; e < static_cast<int64_t>(std::ceil(kEpochs)); ++e) {
    const data::EpochPlan p = data::make_epoch_plan(kTrain, lo, e);
    std::vector<int> cy, cx, flip;
    for (const data::AugmentParams& a : p.augment) {
      REQUIRE(a.pad == 2);
      cy.push_back(a.crop_y);
      cx.push_back(a.crop_x);
      flip.push_back(a.flip ? 1 : 0);
    }
    epochs.push_back({{"order", p.order}, {"crop_y", cy}, {"crop_x", cx}, {"flip", flip}});
  }
  const json plan = {
      {"seed", kSeed}, {"batch_size", kBatch}, {"train_images", kTrain}, {"epochs", epochs}};
  std::ofstream(std::string(dir) + "/plan.json") << plan.dump() << "\n";
}

TEST_CASE("airbench94 recipe: 15 steps equal PyTorch's airbench94 loop on the same batches",
          "[airbench][slow]") {
  const json fx = read_json(std::string(MINIDL_FIXTURE_DIR) + "/airbench94_recipe.json");
  const json& meta = fx.at("meta");
  REQUIRE(meta.at("seed").get<uint64_t>() == kSeed);
  REQUIRE(meta.at("train_images").get<int64_t>() == kTrain);
  REQUIRE(meta.at("batch_size").get<int64_t>() == kBatch);
  REQUIRE(meta.at("epochs").get<double>() == kEpochs);
  REQUIRE(meta.at("test_images").get<int64_t>() == kTest);

  const std::string out = minidl::testing::fresh_dir("airbench_pytorch");
  const train::RunResult r = train::Trainer(short_recipe(out)).fit();
  CHECK(r.steps == meta.at("steps").get<int64_t>());

  // Per epoch: the mean training loss (label smoothing included) and the training accuracy.
  {
    std::ifstream m(out + "/metrics.csv");
    std::string line;
    std::getline(m, line);  // header: epoch,train_loss,train_accuracy,...
    const json& want = fx.at("epochs");
    size_t e = 0;
    for (; std::getline(m, line); ++e) {
      const std::vector<std::string> f = minidl::testing::csv_fields(line);
      REQUIRE(e < want.size());
      INFO("epoch " << e + 1);
      CHECK(std::stod(f.at(1)) == Approx(want[e].at("loss").get<double>()).epsilon(1e-4));
      // One image's prediction may flip on a near tie.
      CHECK(std::stod(f.at(2)) ==
            Approx(want[e].at("accuracy").get<double>()).margin(1.5 / kTrain));
    }
    CHECK(e == want.size());
  }

  // The final (EMA) state, tensor by tensor. Tolerances (errors scaled by the reference's
  // largest entry): the BN biases, the whitening bias and the running means are small sums of
  // gradients that largely cancel, so rounding moves them most: measured up to 2.9e-3 from
  // PyTorch in float32 (1.7e-3 between PyTorch in float32 and in float64), 1e-2 allowed.
  // Everything else is allowed 6e-3: measured within 6e-4 on most machines, but one CI
  // machine's float order moved block3.norm1.running_var by 3.0e-3 (a running variance of
  // the 3x3-plane block sums 15 steps of batch variances of only 64 * 9 values per channel).
  // Each wrong hyperparameter tried moves some tensor by far more (README, "Tests"): training
  // the whitening bias one epoch longer, for one, moves it by 5.7e-2. The worst error of each
  // class is printed (WARN), so a log shows the margin left.
  const Checkpoint ck = load_safetensors(out + "/model.safetensors");
  const json& state = fx.at("state");
  CHECK(ck.tensors.size() == state.size());
  std::pair<double, std::string> worst_cancelling{0.0, ""}, worst_other{0.0, ""};
  for (const auto& [name, t] : ck.tensors) {
    INFO(name);
    REQUIRE(state.contains(name));
    const json& s = state.at(name);
    CHECK(t.shape() == s.at("shape").get<Shape>());
    const bool cancelling =
        name.find("bias") != std::string::npos || name.find("running_mean") != std::string::npos;
    if (s.contains("data")) {
      const double e = scaled_error(values(t), s.at("data").get<std::vector<float>>());
      CHECK(e < (cancelling ? 1e-2 : 6e-3));
      auto& worst = cancelling ? worst_cancelling : worst_other;
      if (e > worst.first) worst = {e, name};
    } else {  // the convolutions' weights: sums and the first entries
      double sum = 0.0, sum_sq = 0.0;
      for (int64_t i = 0; i < t.numel(); ++i) {
        sum += t.data()[i];
        sum_sq += double(t.data()[i]) * t.data()[i];
      }
      // Measured within 5e-8; twice the weight decay changes it by over 1e-6.
      CHECK(sum_sq == Approx(s.at("sum_sq").get<double>()).epsilon(1e-6));
      // A sum of entries of both signs, compared on the scale of the entries (measured 1.3e-4).
      const double n = static_cast<double>(t.numel());
      CHECK(std::fabs(sum - s.at("sum").get<double>()) <
            2e-3 * std::sqrt(sum_sq / n) * std::sqrt(n));
      const std::vector<float> first(t.data(), t.data() + 16);
      CHECK(scaled_error(first, s.at("first").get<std::vector<float>>()) < 2e-3);  // 8.5e-5
    }
  }

  WARN("airbench94 vs PyTorch, worst scaled errors: biases and running means "
       << worst_cancelling.first << " (" << worst_cancelling.second << "), other tensors "
       << worst_other.first << " (" << worst_other.second << ")");

  // The final network's logits on the first test images, without TTA and with TTA level 2.
  ModelOptions mo;
  auto model = create_model("airbench94", mo);
  model->load_state_dict(ck.tensors);
  model->eval();
  const data::Dataset test = data::load_cifar10(minidl::testing::data_dir(), false, kTest);
  const Tensor x = data::to_tensor(test, 0, kTest);
  NoGradGuard no_grad;
  for (int level : {0, 2}) {
    INFO("TTA level " << level);
    const json& want = fx.at("logits").at("tta" + std::to_string(level));
    const Tensor logits = train::tta_logits(*model, x, level);
    CHECK(scaled_error(values(logits), want.at("data").get<std::vector<float>>()) < 2e-3);
  }
  std::filesystem::remove_all(out);
}
