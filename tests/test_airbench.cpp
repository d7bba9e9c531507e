// airbench94 (layers/models/airbench.hpp, apps/cmd_airbench.cpp): the network's names, shapes,
// frozen tensors and initialization; the logit scale; batch independence in eval mode;
// test-time augmentation against its definition; a short run of the recipe end to end, whose
// checkpoint `minidl eval --tta` reproduces; and the CLI's refusals.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "experiments/bn_only.hpp"
#include "train/trainer.hpp"
#include "train/loop.hpp"
#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "data/views.hpp"
#include "gradcheck.hpp"
#include "layers/models/airbench.hpp"
#include "layers/models/registry.hpp"
#include "test_util.hpp"

using namespace minidl;
using minidl::testing::randn;

TEST_CASE("airbench94: names, shapes, frozen tensors and parameter count", "[airbench]") {
  auto model = create_model("airbench94");
  std::vector<std::pair<std::string, Shape>> want = {{"whiten.weight", {24, 3, 2, 2}},
                                                     {"whiten.bias", {24}}};
  const int64_t widths[] = {24, 64, 256, 256};
  for (int b = 1; b <= 3; ++b) {
    const std::string p = "block" + std::to_string(b) + ".";
    const int64_t in = widths[b - 1], out = widths[b];
    want.push_back({p + "conv1.weight", {out, in, 3, 3}});
    for (const char* t : {"weight", "bias", "running_mean", "running_var"})
      want.push_back({p + "norm1." + t, {out}});
    want.push_back({p + "conv2.weight", {out, out, 3, 3}});
    for (const char* t : {"weight", "bias", "running_mean", "running_var"})
      want.push_back({p + "norm2." + t, {out}});
  }
  want.push_back({"head.weight", {10, 256}});
  std::vector<std::pair<std::string, Shape>> got;
  for (auto& [name, t] : model->state_dict()) got.push_back({name, t.shape()});
  CHECK(got == want);
  // 24*12 + 24 + 64*24*9 + 64*64*9 + 2*256*64*9... counted by hand: 1,972,792 values, of which
  // the whitening weight (288) and the six gammas (64+64+256*4 = 1,152) are frozen.
  int64_t total = 0, trainable = 0;
  for (auto& [name, p] : model->named_parameters()) {
    total += p.numel();
    if (p.requires_grad()) trainable += p.numel();
    const bool frozen = name == "whiten.weight" || name.find("norm") != std::string::npos &&
                                                       name.find(".weight") != std::string::npos;
    INFO(name);
    CHECK(p.requires_grad() == !frozen);
  }
  CHECK(total == 1972792);
  CHECK(trainable == 1972792 - 288 - 1152);
  // BN as the recipe's: momentum 0.4 (PyTorch convention), eps 1e-12, gamma 1, beta 0.
  for (BatchNorm* bn : model->modules_of<BatchNorm>()) {
    CHECK(bn->momentum == 0.4f);
    CHECK(bn->eps == 1e-12f);
    for (float v : bn->weight.vec()) REQUIRE(v == 1.0f);
    for (float v : bn->bias.vec()) REQUIRE(v == 0.0f);
  }
}

TEST_CASE("airbench94: Dirac on the first in_channels filters, PyTorch's uniform elsewhere",
          "[airbench]") {
  ModelOptions o;
  o.seed = 3;
  auto model = create_model("airbench94", o);
  auto& net = dynamic_cast<Airbench94&>(*model);
  const Tensor& w = net.block2->conv1->weight;  // [256, 64, 3, 3]
  const int64_t per = 64 * 9;
  const float bound = 1.0f / std::sqrt(float(per));
  double sum_sq = 0.0;
  for (int64_t o2 = 0; o2 < 256; ++o2) {
    for (int64_t i = 0; i < per; ++i) {
      const float v = w.data()[o2 * per + i];
      if (o2 < 64) {
        REQUIRE(v == (i == o2 * 9 + 4 ? 1.0f : 0.0f));
      } else {
        REQUIRE(std::fabs(v) <= bound);
        sum_sq += double(v) * v;
      }
    }
  }
  // U(-b, b) has variance b^2 / 3.
  CHECK(sum_sq / (192.0 * per) == Approx(bound * bound / 3.0).epsilon(0.03));
  for (float v : net.whiten->bias.vec()) REQUIRE(v == 0.0f);
  // Same seed, same weights; another seed, others.
  auto again = create_model("airbench94", o);
  CHECK(again->state_dict()[2].second.vec() == model->state_dict()[2].second.vec());
  o.seed = 4;
  CHECK(create_model("airbench94", o)->state_dict()[2].second.vec() !=
        model->state_dict()[2].second.vec());
}

TEST_CASE("airbench94: logits are the head's outputs / 9, and eval mode is batch-independent",
          "[airbench]") {
  Generator g(11);
  auto model = create_model("airbench94");
  auto& net = dynamic_cast<Airbench94&>(*model);
  net.init_whitening(randn({8, 3, 32, 32}, g));
  Tensor x = randn({3, 3, 32, 32}, g);
  NoGradGuard no_grad;
  net.train();
  Tensor y = net(x);
  REQUIRE(y.shape() == Shape{3, 10});
  net.eval();
  Tensor batch = net(x);
  // The head's own output for the same features, divided by 9.
  Tensor h = ops::gelu((*net.whiten)(x));
  h = (*net.block3)((*net.block2)((*net.block1)(h)));
  Tensor head = (*net.head)(ops::flatten(ops::max_pool2d(h, 3, 3, 0)));
  for (int64_t i = 0; i < 30; ++i) REQUIRE(batch.data()[i] == head.data()[i] * (1.0f / 9.0f));
  // One image alone gives its row of the batch, to 1e-5 of the largest logit as every Winograd
  // network (test_layers, test_vgg): its GEMMs have other column counts for 1 image than for 3,
  // and OpenBLAS's AVX2 kernels (Zen 3) then round differently in the last bit (AVX-512's
  // happen to agree exactly).
  float scale = 0.0f;
  for (float v : batch.vec()) scale = std::max(scale, std::abs(v));
  REQUIRE(scale > 0.0f);
  for (int64_t n = 0; n < 3; ++n) {
    Tensor one({1, 3, 32, 32});
    std::copy(x.data() + n * 3072, x.data() + (n + 1) * 3072, one.mutable_data());
    Tensor y1 = net(one);
    for (int64_t k = 0; k < 10; ++k) {
      INFO("image " << n << " logit " << k);
      REQUIRE(std::abs(y1.data()[k] - batch.data()[n * 10 + k]) <= 1e-5f * scale);
    }
  }
  CHECK_THROWS_WITH(net(randn({1, 3, 28, 28}, g)), Catch::Contains("[N, 3, 32, 32]"));
}

TEST_CASE("airbench94: one training step changes beta and the weights, never gamma", "[airbench]") {
  Generator g(12);
  auto model = create_model("airbench94");
  auto& net = dynamic_cast<Airbench94&>(*model);
  net.init_whitening(randn({8, 3, 32, 32}, g));
  const Tensor whiten_before = net.whiten->weight.clone();
  Tensor loss = ops::cross_entropy(net(randn({4, 3, 32, 32}, g)), {0, 1, 2, 3}, 0.2f);
  loss.backward();
  CHECK(!net.whiten->weight.has_grad());
  CHECK(!net.block1->norm1->weight.has_grad());
  REQUIRE(net.block1->norm1->bias.has_grad());
  double g_abs = 0.0;
  const Tensor beta_grad = net.block1->norm1->bias.grad();  // kept alive while its values are read
  for (float v : beta_grad.vec()) g_abs += std::fabs(v);
  CHECK(g_abs > 0.0);
  CHECK(net.whiten->weight.vec() == whiten_before.vec());
}

TEST_CASE(
    "tta_logits: level 1 is the mean of the image's and its mirror's logits, level 2 "
    "adds the two one-pixel translations",
    "[airbench][tta]") {
  Generator g(13);
  auto model = create_model("airbench94");
  auto& net = dynamic_cast<Airbench94&>(*model);
  net.init_whitening(randn({8, 3, 32, 32}, g));
  net.eval();
  NoGradGuard no_grad;
  Tensor x = randn({2, 3, 32, 32}, g);
  Tensor a = net(x).clone(), b = net(data::hflip(x)).clone();
  Tensor t1 = train::tta_logits(net, x, 1);
  REQUIRE(t1.shape() == Shape{2, 10});
  bool differs = false;
  for (int64_t i = 0; i < 20; ++i) {
    REQUIRE(t1.data()[i] == 0.5f * (a.data()[i] + b.data()[i]));
    differs = differs || a.data()[i] != b.data()[i];
  }
  CHECK(differs);  // the mirror is another view
  Tensor t0 = train::tta_logits(net, x, 0);
  for (int64_t i = 0; i < 20; ++i) REQUIRE(t0.data()[i] == a.data()[i]);
  // Level 2: 6 views, weights 1/4, 1/4 and 1/8 for each of the four translated ones.
  Tensor t2 = train::tta_logits(net, x, 2);
  Tensor u = data::crop_reflect(x, 1, 0, 0), d = data::crop_reflect(x, 1, 2, 2);
  std::vector<Tensor> views = {net(u).clone(), net(data::hflip(u)).clone(), net(d).clone(),
                               net(data::hflip(d)).clone()};
  for (int64_t i = 0; i < 20; ++i) {
    double want = 0.25 * (a.data()[i] + b.data()[i]);
    for (const Tensor& v : views) want += 0.125 * v.data()[i];
    REQUIRE(t2.data()[i] == Approx(want).margin(1e-6));
  }
  CHECK_THROWS_WITH(train::tta_logits(net, x, 3), Catch::Contains("tta must be 0, 1 or 2"));
}

TEST_CASE("train --recipe airbench94: a short run, its files, and eval --tta reproducing it",
          "[airbench][slow]") {
  // 4 batches per epoch: 6 steps, the second epoch stops after 2 batches
  train::TrainOptions c = train::airbench94_options(64, 1.5);
  c.data = minidl::testing::data_dir();
  c.out = minidl::testing::fresh_dir("airbench");
  c.limit_train = 256;
  c.limit_test = 200;
  c.tta = 2;
  c.seed = 1;
  const train::RunResult r = train::Trainer(c).fit();
  CHECK(r.steps == 6);
  CHECK(r.test_accuracy > 0.1);  // above chance after 6 steps of 64 images
  for (const char* f : {"model.safetensors", "metrics.csv", "results.json", "config.json"})
    CHECK(std::filesystem::exists(c.out + "/" + f));
  std::ifstream in(c.out + "/results.json");
  nlohmann::json j;
  in >> j;
  CHECK(j.at("test_accuracy_tta").get<double>() == r.test_accuracy_tta);
  CHECK(j.at("steps").get<int64_t>() == 6);
  // eval on the saved checkpoint prints the run's accuracies, with and without TTA.
  for (int tta : {0, 2}) {
    app::EvalConfig e;
    e.checkpoint = c.out + "/model.safetensors";
    e.data = c.data;
    e.limit = 200;
    e.json = true;
    e.tta = tta;
    CHECK(app::run_eval(e) == (tta ? r.test_accuracy_tta : r.test_accuracy));
  }
  // Without eval_every_epoch only the last epoch is evaluated (metrics.csv: the test columns
  // empty before it, read back by name).
  auto test_accuracies = [](const std::string& dir) {
    std::vector<double> acc;
    for (const train::MetricsRow& row : train::read_metrics(dir + "/metrics.csv"))
      acc.push_back(row.test_accuracy.value_or(-1.0));
    return acc;
  };
  const std::vector<double> quiet = test_accuracies(c.out);
  REQUIRE(quiet.size() == 2);
  CHECK(quiet[0] == -1.0);
  CHECK(quiet[1] == r.test_accuracy);
  // With it, epoch 1 is evaluated too, and the evaluations leave the training unchanged.
  train::TrainOptions every = c;
  every.out = minidl::testing::fresh_dir("airbench_every");
  every.eval_every_epoch = true;
  const train::RunResult r2 = train::Trainer(every).fit();
  const std::vector<double> logged = test_accuracies(every.out);
  REQUIRE(logged.size() == 2);
  CHECK(logged[0] > 0.0);
  CHECK(logged[1] == r.test_accuracy);
  CHECK(r2.test_accuracy == r.test_accuracy);
  CHECK(r2.test_accuracy_tta == r.test_accuracy_tta);
  std::filesystem::remove_all(c.out);
  std::filesystem::remove_all(every.out);
}

TEST_CASE("train --recipe airbench94 and --tta: the CLI's refusals", "[airbench][cli]") {
  using minidl::testing::run_cli;
  const std::string data = " --data " + minidl::testing::data_dir();
  auto [s1, o1] = run_cli("train --recipe airbench94 --lr 0.1" + data);
  CHECK(s1 == 1);
  CHECK_THAT(o1, Catch::Contains("--lr is fixed by --recipe airbench94"));
  // --tta takes 0, 1 or 2 with every recipe: 3 is refused in one error line naming it and its
  // range (then the line every command-line error ends with, naming the --help to read).
  for (const std::string recipe : {"", " --recipe airbench94", " --recipe bn-speedrun"}) {
    INFO("train" << recipe);
    auto [s2, o2] = run_cli("train" + recipe + " --tta 3 --epochs 1" + data);
    CHECK(s2 == 1);
    const std::vector<std::string> lines = minidl::testing::lines_of(o2);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "minidl: error: --tta: must be an integer from 0 to 2, got 3");
    CHECK(lines[1] == "Run minidl train --help for its flags and their ranges.");
  }
  auto [s3, o3] = run_cli("eval --checkpoint x.safetensors --tta 3" + data);
  CHECK(s3 != 0);
  CHECK_THAT(o3, Catch::Contains("--tta"));
  CHECK_THAT(o3, Catch::Contains("from 0 to 2"));
  auto [s4, o4] = run_cli("train --recipe airbench94 --limit-train 100" + data);
  CHECK(s4 == 1);
  CHECK_THAT(o4, Catch::Contains(
                     "--limit-train: the recipe drops incomplete batches, so it needs at least one "
                     "batch (1024) of training images, got 100"));
  auto [s5, o5] = run_cli("train --eval-every-epoch --epochs 1" + data);
  CHECK(s5 == 1);
  CHECK_THAT(o5, Catch::Contains("--eval-every-epoch is for --recipe airbench94"));
}
