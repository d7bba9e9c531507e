// Freezing (--train-only), frozen BN statistics (--bn-stats running) and BN recalibration.
#include <catch2/catch.hpp>
#include <set>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "apps/cli.hpp"
#include "experiments/bn_only.hpp"
#include "train/trainer.hpp"
#include "train/loop.hpp"
#include "core/autograd.hpp"
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
  train::TrainOptions c = minidl::testing::small_options("freeze_" + mode + "_" + bn_stats, 1, 256);
  c.limit_test = 100;
  c.seed = 21;
  c.weight_decay = 5e-4f;  // frozen tensors must not decay either
  c.train_only = parse_enum<optim::TrainOnly>(mode, "mode");
  c.bn_stats = parse_enum<train::BnStatsMode>(bn_stats, "bn_stats");
  minidl::testing::fit(c);
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
      const bool learns = mode == "all" ||
                          ((mode == "bn" || mode == "bn+fc") && is_bn_param(name)) ||
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
  o.bn_init = BnInit::kUniform;
  auto model = std::dynamic_pointer_cast<CifarResNet>(create_model("resnet8", o));
  REQUIRE(model);
  const int layers =
      recalibrate_batch_norm(*model, [&](const std::function<void(const Tensor&)>& visit) {
        for (int64_t b = 0; b < ds.size(); b += 128)
          visit(data::to_tensor(ds, b, std::min<int64_t>(128, ds.size() - b)));
      });
  CHECK(layers == 7 + 2);  // stem + 3 blocks x 2 + 2 shortcuts
  // Direct: every BN layer's input (stem, bn1 and bn2 of each block, and both shortcut BNs),
  // captured by forward pre-hooks in one inference pass over all 300 images at once with the
  // recalibrated statistics in place, against its running_mean and unbiased running_var.
  std::vector<std::pair<std::string, Tensor>> inputs;
  std::vector<Module::HookHandle> hooks;
  for (auto& [name, bn] : model->named_modules_of<BatchNorm>()) {
    hooks.push_back(
        bn->register_forward_pre_hook([&inputs, name = name](Module&, const Tensor& in) {
          inputs.emplace_back(name, in.clone());
        }));
  }
  {
    NoGradGuard no_grad;
    (*model)(data::to_tensor(ds, 0, ds.size()));
  }
  hooks.clear();
  REQUIRE(inputs.size() == 9);
  std::set<std::string> seen;
  for (const auto& [name, t] : inputs) {
    seen.insert(name);
    BatchNorm* bn = nullptr;
    for (auto& [n, b] : model->named_modules_of<BatchNorm>()) bn = n == name ? b : bn;
    REQUIRE(bn);
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
      INFO(name << " channel " << c);
      CHECK(std::abs(bn->running_mean.data()[c] - mean) <= 1e-5 * (1 + std::abs(mean)));
      CHECK(std::abs(bn->running_var.data()[c] - var) <= 1e-5 * (1 + var));
    }
  }
  CHECK(seen.size() == 9);  // each layer once
  CHECK(seen.count("blocks.1.shortcut.1"));
  CHECK(seen.count("blocks.2.shortcut.1"));
}

TEST_CASE("a forward pre-hook sees fused and unfused calls and goes away with its handle",
          "[bn][hooks]") {
  auto model = create_model("resnet8", {});
  int calls = 0;
  BatchNorm* stem = model->modules_of<BatchNorm>()[0];  // called through forward_relu (fused)
  {
    Module::HookHandle h = stem->register_forward_pre_hook([&](Module& m, const Tensor& x) {
      CHECK(&m == stem);
      CHECK(x.size(1) == 16);
      ++calls;
    });
    (*model)(Tensor({2, 3, 32, 32}));
    CHECK(calls == 1);
    h.remove();
    (*model)(Tensor({2, 3, 32, 32}));
    CHECK(calls == 1);
  }
  // An exception thrown by a hook leaves the forward; the handle still removes the hook.
  {
    Module::HookHandle h = stem->register_forward_pre_hook(
        [](Module&, const Tensor&) { throw std::runtime_error("stop"); });
    CHECK_THROWS_WITH((*model)(Tensor({2, 3, 32, 32})), "stop");
  }
  CHECK_NOTHROW((*model)(Tensor({2, 3, 32, 32})));
}

TEST_CASE("experiment bn-only writes a table that matches its checkpoints",
          "[freeze][experiment][slow]") {
  experiments::BnOnlyConfig e;
  e.data = data_dir();
  e.out = minidl::testing::fresh_dir("experiment");
  e.model = "resnet8";
  e.epochs = 1;
  e.limit_train = 256;
  e.limit_test = 200;
  e.variants = {optim::TrainOnly::kBn, optim::TrainOnly::kFc};
  REQUIRE(experiments::run_bn_only(e).finished);
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
    const std::vector<std::string> f = minidl::testing::csv_fields(line);
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

  experiments::BnOnlyConfig bad = e;
  bad.recipe = train::Recipe::kAirbench94;
  CHECK_THROWS_WITH(experiments::run_bn_only(bad), Catch::Contains("recipe must be"));
}

/// The rows of a CSV file, split at commas (header included).
static std::vector<std::vector<std::string>> read_csv_rows(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    rows.push_back(f);
  }
  return rows;
}

TEST_CASE(
    "bn-only-sweep split by --stop-after and --resume equals one run, and eval reads the "
    "checkpoint's normalization",
    "[freeze][experiment][slow]") {
  experiments::BnOnlyConfig e;
  e.data = data_dir();
  e.models = {"resnet8", "resnet8_8"};
  e.variants = {optim::TrainOnly::kBn, optim::TrainOnly::kFc};
  e.epochs = 2;
  e.recipe = train::Recipe::kFrankle2021;  // ImageNet normalization, gamma ~ U[0, 1], milestones at
                                           // 1 and 1.5
  e.limit_train = 256;
  e.limit_test = 200;

  experiments::BnOnlyConfig whole = e;
  whole.out = minidl::testing::fresh_dir("sweep_whole");
  REQUIRE(experiments::run_bn_only_sweep(whole).finished);

  // 2 models x 2 variants x 2 epochs = 8 epochs, 3 per invocation: 3 invocations.
  experiments::BnOnlyConfig split = e;
  split.out = minidl::testing::fresh_dir("sweep_split");
  split.stop_after = 3;
  int invocations = 1;
  bool finished = experiments::run_bn_only_sweep(split).finished;
  CHECK_FALSE(finished);
  CHECK_FALSE(fs::exists(split.out + "/results.csv"));  // no table before every run finished
  // Continuing without --resume would overwrite saved epochs: refused, naming the folder.
  CHECK_THROWS_WITH(experiments::run_bn_only_sweep(split),
                    Catch::Contains(split.out + "/resnet8/bn") && Catch::Contains("resume"));
  split.resume = true;
  while (!finished && invocations < 5) {
    finished = experiments::run_bn_only_sweep(split).finished;
    ++invocations;
  }
  CHECK(finished);
  CHECK(invocations == 3);

  // The same table apart from the timing columns (wall_seconds, images_per_second).
  const auto a = read_csv_rows(whole.out + "/results.csv");
  const auto b = read_csv_rows(split.out + "/results.csv");
  REQUIRE(a.size() == 5);
  REQUIRE(b.size() == 5);
  CHECK(a[0] == std::vector<std::string>{"model", "depth", "width", "variant", "trained_parameters",
                                         "bn_parameters", "epochs", "train_accuracy",
                                         "test_accuracy", "wall_seconds", "images_per_second",
                                         "gamma_below_0.05"});
  for (size_t r = 1; r < a.size(); ++r) {
    REQUIRE(a[r].size() == 12);
    REQUIRE(b[r].size() == 12);
    for (size_t col : {0, 1, 2, 3, 4, 5, 6, 7, 8, 11}) CHECK(a[r][col] == b[r][col]);
  }
  // model, depth, width, variant, trained, BN parameters (resnet8: 672, width 8: 336).
  CHECK(a[1][0] == "resnet8");
  CHECK(a[1][1] == "8");
  CHECK(a[1][2] == "16");
  CHECK(a[1][3] == "bn");
  CHECK(a[1][4] == "672");
  CHECK(a[1][5] == "672");
  CHECK(a[2][3] == "fc");
  CHECK(a[2][4] == "650");
  CHECK(a[3][0] == "resnet8_8");
  CHECK(a[3][2] == "8");
  CHECK(a[3][5] == "336");
  CHECK(a[4][4] == "330");  // 32 * 10 + 10

  // The split run's checkpoints are bit-identical to the uninterrupted run's.
  for (const char* run : {"resnet8/bn", "resnet8_8/fc"}) {
    INFO(run);
    const auto x = load_safetensors(whole.out + "/" + run + "/model.safetensors").tensors;
    const auto y = load_safetensors(split.out + "/" + run + "/model.safetensors").tensors;
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      CHECK(x[i].first == y[i].first);
      CHECK(x[i].second.vec() == y[i].second.vec());
    }
  }

  // The checkpoint records ImageNet normalization, and eval uses it: eval's loss is the test
  // loss of the last epoch in metrics.csv (with CIFAR-10's mean/std the loss would differ).
  const std::string ck = whole.out + "/resnet8/bn/model.safetensors";
  CHECK(load_safetensors(ck).metadata.at("normalization") == "imagenet");
  const auto metrics = read_csv_rows(whole.out + "/resnet8/bn/metrics.csv");
  REQUIRE(metrics.size() == 3);
  app::EvalConfig ev;
  ev.checkpoint = ck;
  ev.data = e.data;
  ev.limit = e.limit_test;
  ev.json = true;
  CHECK(app::run_eval(ev) == Approx(std::stod(a[1][8])).margin(1e-9));
  CHECK(app::run_eval(ev) == Approx(std::stod(metrics[2][4])).margin(1e-9));
  {
    // eval's path: load_model, checkpoint_normalization, evaluate. Its loss is metrics.csv's
    // last test_loss; CIFAR-10's mean/std would give another loss.
    Checkpoint c;
    std::shared_ptr<Module> model = train::load_model(ck, &c);
    const data::Normalization norm = train::checkpoint_normalization(c, ck);
    CHECK(norm.mean == data::normalization_named("imagenet").mean);
    const data::Dataset test = data::load_cifar10(e.data, false, e.limit_test);
    const double loss = train::evaluate(*model, test, 1000, train::BnStats::kRunning, norm).loss;
    CHECK(loss == Approx(std::stod(metrics[2][3])).margin(2e-6));
    CHECK(std::abs(train::evaluate(*model, test, 1000).loss - loss) > 1e-3);
  }

  // The same tensors saved as trained with CIFAR-10 normalization give another accuracy or,
  // at least, another prediction for some image: compare the logits directly.
  {
    Checkpoint c = load_safetensors(ck);
    std::shared_ptr<Module> model = create_model("resnet8", {});
    model->load_state_dict(c.tensors);
    model->eval();
    const data::Dataset test = data::load_cifar10(e.data, false, 8);
    NoGradGuard no_grad;
    const Tensor in_imagenet =
        (*model)(data::to_tensor(test, 0, 8, data::normalization_named("imagenet")));
    const Tensor in_cifar = (*model)(data::to_tensor(test, 0, 8));
    CHECK(in_imagenet.vec() != in_cifar.vec());
    // A checkpoint naming an unknown normalization is refused, naming the file.
    c.metadata["normalization"] = "bogus";
    const std::string bad = split.out + "/bogus.safetensors";
    save_safetensors(bad, c.tensors, c.metadata);
    ev.checkpoint = bad;
    CHECK_THROWS_WITH(app::run_eval(ev),
                      Catch::Contains(bad) && Catch::Contains("cifar10 or imagenet"));
  }

  // --resume with other flags is refused, naming the run's config.json and the field.
  experiments::BnOnlyConfig other = split;
  other.seed = 1;
  CHECK_THROWS_WITH(experiments::run_bn_only_sweep(other),
                    Catch::Contains("resnet8/bn/config.json") && Catch::Contains("seed"));
  fs::remove_all(whole.out);
  fs::remove_all(split.out);
}
