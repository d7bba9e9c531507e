// The bn-speedrun recipe (train::bn_speedrun_options, docs/bn-speedrun/): its settings are probe
// B02's, it trains BatchNorm's gamma and beta and nothing else (every other tensor bit for bit),
// config.json keeps it for --resume, the CLI refuses the flags it fixes in one line, and --tta
// adds a final TTA pass that leaves the training and the plain accuracy as they were.
#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/safetensors.hpp"
#include "data/cifar10.hpp"
#include "data/loader.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/resnet.hpp"
#include "layers/patch_whitening.hpp"
#include "optim/freeze.hpp"
#include "gradcheck.hpp"
#include "test_util.hpp"
#include "train/run_dir.hpp"
#include "train/trainer.hpp"

using namespace minidl;
namespace fs = std::filesystem;

namespace {

/// Probe B02's options (docs/bn-speedrun/probes.csv): the default recipe with its flags
/// --train-only bn --model resnet110 --epochs 12 --seed 100 --threads 2 --weight-decay 0
/// --label-smoothing 0 --optimizer adam --lr 0.1 --augment false --batch-size 64.
train::TrainOptions probe_b02() {
  train::TrainOptions o;
  o.train_only = optim::TrainOnly::kBn;
  o.model = "resnet110";
  o.epochs = 12;
  o.seed = 100;
  o.threads = 2;
  o.weight_decay = 0.0f;
  o.label_smoothing = 0.0f;
  o.optimizer = train::OptimizerKind::kAdam;
  o.lr = 0.1f;
  o.augment = false;
  o.batch_size = 64;
  return o;
}

/// The config.json keys on which two options differ.
std::set<std::string> differing_keys(const train::TrainOptions& a, const train::TrainOptions& b) {
  std::set<std::string> keys;
  for (const train::ConfigDifference& d : train::config_differences(a, b)) keys.insert(d.key);
  return keys;
}

/// resnet8's BatchNorm parameters, in network order: the stem's bn, each block's bn1 and bn2,
/// and the BatchNorm of the two downsampling blocks' shortcuts (shortcut.1).
const std::vector<std::string> kResnet8BnParameters = {"bn.weight",
                                                       "bn.bias",
                                                       "blocks.0.bn1.weight",
                                                       "blocks.0.bn1.bias",
                                                       "blocks.0.bn2.weight",
                                                       "blocks.0.bn2.bias",
                                                       "blocks.1.bn1.weight",
                                                       "blocks.1.bn1.bias",
                                                       "blocks.1.bn2.weight",
                                                       "blocks.1.bn2.bias",
                                                       "blocks.1.shortcut.1.weight",
                                                       "blocks.1.shortcut.1.bias",
                                                       "blocks.2.bn1.weight",
                                                       "blocks.2.bn1.bias",
                                                       "blocks.2.bn2.weight",
                                                       "blocks.2.bn2.bias",
                                                       "blocks.2.shortcut.1.weight",
                                                       "blocks.2.shortcut.1.bias"};

/// The recipe's options on resnet8 at seed 7 for `epochs` epochs over the first `train_images`
/// training images and 100 test images, writing to a fresh folder named `name`.
train::TrainOptions small_run(const std::string& name, int64_t epochs, int64_t train_images) {
  train::TrainOptions o = train::bn_speedrun_options();
  o.model = "resnet8";
  o.epochs = static_cast<double>(epochs);
  o.seed = 7;
  o.data = minidl::testing::data_dir();
  o.limit_train = train_images;
  o.limit_test = 100;
  o.out = minidl::testing::fresh_dir(name);
  return o;
}

/// Every tensor of o's model at its random init (the seed's), by state name.
std::map<std::string, std::vector<float>> initial_state(const train::TrainOptions& o) {
  std::map<std::string, std::vector<float>> init;
  for (const auto& [name, t] : create_model(o.model, train::model_options(o))->state_dict())
    init[name].assign(t.vec().begin(), t.vec().end());
  return init;
}

}  // namespace

TEST_CASE("bn-speedrun: the recipe's options are probe B02's, for 8 epochs", "[bn-speedrun]") {
  const train::TrainOptions o = train::bn_speedrun_options();
  CHECK(o.recipe == train::Recipe::kBnSpeedrun);
  CHECK(name_of(o.recipe) == "bn-speedrun");
  CHECK(o.train_only == optim::TrainOnly::kBn);
  CHECK(o.model == "resnet110");
  CHECK(o.epochs == 8);
  CHECK(o.batch_size == 64);
  CHECK(o.optimizer == train::OptimizerKind::kAdam);
  CHECK(o.lr == 0.1f);
  CHECK(o.schedule == optim::ScheduleKind::kOneCycle);
  CHECK(o.warmup_epochs < 0);  // 15% of the run
  CHECK(o.weight_decay == 0.0f);
  CHECK(o.label_smoothing == 0.0f);
  CHECK_FALSE(o.augment);
  CHECK(o.bn_init == BnInit::kFixed);  // gamma 1
  CHECK(o.bn_stats == train::BnStatsMode::kBatch);
  CHECK(o.norm == NormKind::kBatch);
  CHECK(o.normalize == "cifar10");
  CHECK(o.tta == 0);
  CHECK(o.lookahead_every == 0);
  CHECK(o.bn_bias_lr_scale == 1.0f);
  CHECK_FALSE(o.eval_every_epoch);  // the test set after the last epoch only
  CHECK(o.resumable);
  CHECK(o.out == "runs/bn-speedrun");
  CHECK_NOTHROW(train::validate(o));
  // Every setting config.json holds is B02's, but the epochs (the budget at the rate measured
  // alone), the recipe's name, where it writes and when it evaluates (which does not change the
  // training).
  train::TrainOptions seeded = o;
  seeded.seed = 100;
  CHECK(differing_keys(probe_b02(), seeded) ==
        std::set<std::string>{"epochs", "recipe", "out", "eval_every_epoch"});
  // preset() names the same options.
  CHECK(differing_keys(train::preset(train::Recipe::kBnSpeedrun), o).empty());
  // resnet110 trains 8,288 parameters: gamma and beta of its 4,144 BatchNorm channels.
  std::shared_ptr<Module> model = create_model(o.model, train::model_options(o));
  const auto masks = optim::apply_train_only(*model, o.train_only, o.seed);
  CHECK(optim::count_trainable(*model, masks) == 8288);
}

TEST_CASE("bn-speedrun: config.json keeps the recipe, its model and epochs for --resume",
          "[bn-speedrun]") {
  train::TrainOptions o = train::bn_speedrun_options();
  o.model = "resnet56";  // overridden, as a user may
  o.epochs = 40;
  o.seed = 2;
  o.eval_every_epoch = true;
  const nlohmann::json j = train::config_to_json(o);
  CHECK(j.at("recipe") == "bn-speedrun");
  CHECK(j.at("model") == "resnet56");
  CHECK(j.at("epochs") == 40);
  CHECK(j.at("optimizer") == "adam");
  CHECK(j.at("train_only") == "bn");
  CHECK(j.at("eval_every_epoch") == true);
  const train::TrainOptions back = train::config_from_json(j);
  CHECK(back.recipe == train::Recipe::kBnSpeedrun);
  CHECK(train::config_differences(o, back).empty());
  // A saved field wins over the preset's (a run resumed after the preset changed keeps its own).
  nlohmann::json older = j;
  older["lr"] = 0.05;
  older["eval_every_epoch"] = false;
  const train::TrainOptions kept = train::config_from_json(older);
  CHECK(kept.lr == 0.05f);
  CHECK_FALSE(kept.eval_every_epoch);
  // The default recipe's config.json stays as it was: no "recipe" key, no eval_every_epoch.
  const nlohmann::json d = train::config_to_json(train::TrainOptions{});
  CHECK_FALSE(d.contains("recipe"));
  CHECK_FALSE(d.contains("eval_every_epoch"));
}

TEST_CASE(
    "bn-speedrun: only BatchNorm's gamma and beta learn, every other parameter stays bit for "
    "bit",
    "[bn-speedrun][freeze]") {
  // The recipe's options on resnet8 over 512 training images: 2 epochs of 8 steps of 64.
  const train::TrainOptions o = small_run("bn_speedrun_freeze", 2, 512);
  const std::map<std::string, std::vector<float>> init = initial_state(o);

  train::Trainer trainer(o);
  const train::RunResult r = trainer.fit();
  CHECK(r.steps == 16);
  CHECK(r.finished);
  CHECK(r.trainable_parameters == 672);  // 2 x 336 BatchNorm channels

  // The parameters that learn are exactly the BatchNorm weights and biases, by name.
  std::vector<std::string> trainable;
  for (const auto& [name, p] : trainer.model()->named_parameters())
    if (p.requires_grad()) trainable.push_back(name);
  CHECK(trainable == kResnet8BnParameters);

  // Every parameter but those is bit-identical to its init; every BatchNorm one moved, element
  // by element (Adam moves each element with a non-zero gradient by about the lr).
  const std::set<std::string> bn(kResnet8BnParameters.begin(), kResnet8BnParameters.end());
  std::map<std::string, std::vector<float>> trained =
      minidl::testing::tensors_of(o.out + "/model.safetensors");
  REQUIRE(trained.size() == init.size());
  int64_t frozen = 0, learned = 0;
  for (const auto& [name, p] : trainer.model()->named_parameters()) {
    INFO("parameter " << name);
    const std::vector<float>& before = init.at(name);
    const std::vector<float>& after = trained.at(name);
    REQUIRE(before.size() == after.size());
    int64_t moved = 0;
    for (size_t i = 0; i < before.size(); ++i) moved += before[i] != after[i];
    if (bn.count(name)) {
      CHECK(moved == static_cast<int64_t>(before.size()));
      ++learned;
    } else {
      CHECK(moved == 0);
      ++frozen;
    }
  }
  CHECK(learned == 18);
  CHECK(frozen == 11);  // 9 convolutions (the stem, 6 in blocks, 2 shortcuts), fc weight and bias

  // Only the last epoch was evaluated (metrics.csv's test columns empty before it).
  const std::vector<train::MetricsRow> rows = train::read_metrics(o.out + "/metrics.csv");
  REQUIRE(rows.size() == 2);
  CHECK_FALSE(rows[0].test_accuracy.has_value());
  CHECK(rows[1].test_accuracy.value_or(-1.0) == r.test_accuracy);

  // Evaluating every epoch trains the same bits.
  train::TrainOptions every = o;
  every.eval_every_epoch = true;
  every.out = minidl::testing::fresh_dir("bn_speedrun_freeze_every");
  const train::RunResult r2 = train::Trainer(every).fit();
  CHECK(r2.test_accuracy == r.test_accuracy);
  CHECK(minidl::testing::tensors_of(every.out + "/model.safetensors") == trained);
  fs::remove_all(o.out);
  fs::remove_all(every.out);
}

TEST_CASE("train --recipe bn-speedrun: the flags it fixes are refused in one line",
          "[bn-speedrun][cli]") {
  using minidl::testing::run_cli;
  const std::string data = " --data " + minidl::testing::data_dir();
  for (const std::string flag : {"--lr 0.05", "--optimizer sgd", "--batch-size 128",
                                 "--augment true", "--label-smoothing 0.1"}) {
    INFO(flag);
    const auto [status, out] = run_cli("train --recipe bn-speedrun " + flag + data);
    CHECK(status == 1);
    CHECK(std::count(out.begin(), out.end(), '\n') == 1);
    const std::string name = flag.substr(0, flag.find(' '));
    CHECK_THAT(out, Catch::StartsWith("minidl: error: " + name +
                                      " is fixed by --recipe bn-speedrun (it takes --data, "
                                      "--model, --epochs, --seed"));
    CHECK_THAT(out,
               Catch::Contains(
                   ", --eval-every-epoch, --tta, --profile, --train-only, --stem-whitening)\n"));
  }
  // --train-only takes the recipe's own bn and its labelled variant bn+fc, nothing else.
  for (const std::string mode : {"all", "fc", "random-per-channel"}) {
    INFO(mode);
    const auto [status, out] = run_cli("train --recipe bn-speedrun --train-only " + mode + data);
    CHECK(status == 1);
    CHECK(out ==
          "minidl: error: --train-only: --recipe bn-speedrun trains BatchNorm only (bn) or, as "
          "its labelled variant, BatchNorm and the output layer (bn+fc); got " +
              mode + "\n");
  }
}

TEST_CASE(
    "train --recipe bn-speedrun --train-only bn+fc: the labelled variant trains the readout too",
    "[bn-speedrun][freeze][cli]") {
  using minidl::testing::run_cli;
  const std::string out = minidl::testing::fresh_dir("bn_speedrun_bn_fc");
  const auto [status, text] = run_cli(
      "train --recipe bn-speedrun --train-only bn+fc --model resnet8 --epochs 1 --seed 7 "
      "--limit-train 256 --limit-test 100 --out " +
      out + " --data " + minidl::testing::data_dir());
  INFO(text);
  REQUIRE(status == 0);
  // resnet8: 672 BatchNorm weights and biases, and the 64 -> 10 readout's 650.
  CHECK_THAT(text, Catch::Contains("1,322 trainable"));
  CHECK_THAT(text, Catch::Contains("--train-only bn+fc"));
  CHECK(nlohmann::json::parse(minidl::testing::read_file(out + "/config.json")).at("train_only") ==
        "bn+fc");
  fs::remove_all(out);
}

TEST_CASE(
    "CifarResNet::init_stem_whitening: the stem is the W/2 leading principal components of 3x3 "
    "patches and their negatives, and odd or too wide stems and other images are refused",
    "[bn-speedrun][models][whitening]") {
  Generator gen(5);
  CifarResNet net(8, 16, 10, gen);
  Generator data_gen(6);
  const Tensor images = minidl::testing::randn({3, 3, 9, 9}, data_gen);
  const std::vector<float> before(net.conv->weight.vec().begin(), net.conv->weight.vec().end());
  net.init_stem_whitening(images, 1e-3);
  const Tensor want = patch_whitening_weight(images, 3, 1e-3, 8);
  REQUIRE(want.shape() == Shape{16, 3, 3, 3});
  CHECK(net.conv->weight.vec() == want.vec());
  CHECK(std::vector<float>(net.conv->weight.vec().begin(), net.conv->weight.vec().end()) != before);
  CHECK(net.conv->weight.requires_grad());  // freezing it is train_only's job
  // Filter 8 + i is minus filter i, and the first 8 are orthogonal (eigenvectors, scaled).
  const float* w = net.conv->weight.data();
  for (int64_t i = 0; i < 8; ++i) {
    for (int64_t j = 0; j < 8; ++j) {
      double dot = 0.0;
      for (int64_t k = 0; k < 27; ++k) dot += double(w[i * 27 + k]) * w[j * 27 + k];
      if (i != j) CHECK(dot == Approx(0.0).margin(1e-4));
    }
    for (int64_t k = 0; k < 27; ++k) CHECK(w[(8 + i) * 27 + k] == -w[i * 27 + k]);
  }
  Generator g2(5);
  CifarResNet odd(8, 15, 10, g2);
  CHECK_THROWS_WITH(odd.init_stem_whitening(images),
                    Catch::StartsWith("stem whitening needs an even stem width of at most 54") &&
                        Catch::EndsWith("got width 15"));
  CifarResNet wide(8, 56, 10, g2);
  CHECK_THROWS_WITH(wide.init_stem_whitening(images), Catch::EndsWith("got width 56"));
  CHECK_THROWS_WITH(net.init_stem_whitening(Tensor({2, 1, 9, 9})),
                    "stem whitening: expected images [N, 3, H, W], got [2, 1, 9, 9]");
}

TEST_CASE(
    "bn-speedrun --stem-whitening: the stem is set from the first training images, then stays "
    "frozen bit for bit, the same BatchNorm parameters learn, and config.json keeps it",
    "[bn-speedrun][freeze][whitening]") {
  train::TrainOptions o = small_run("bn_speedrun_whitening", 1, 256);
  o.stem_whitening = true;
  const std::map<std::string, std::vector<float>> init = initial_state(o);
  train::Trainer trainer(o);
  const train::RunResult r = trainer.fit();
  CHECK(r.trainable_parameters == 672);
  std::vector<std::string> trainable;
  for (const auto& [name, p] : trainer.model()->named_parameters())
    if (p.requires_grad()) trainable.push_back(name);
  CHECK(trainable == kResnet8BnParameters);
  // The stem: the whitening of the 256 training images (fewer than whitening_images), as the
  // input pipeline normalizes them, bit for bit after the epoch.
  const data::Dataset train_set = data::load_cifar10(o.data, true, 256);
  const Tensor want = patch_whitening_weight(
      data::to_tensor(train_set, 0, 256, data::normalization_named("cifar10")), 3, 5e-4, 8);
  std::map<std::string, std::vector<float>> trained =
      minidl::testing::tensors_of(o.out + "/model.safetensors");
  CHECK(trained.at("conv.weight") == std::vector<float>(want.vec().begin(), want.vec().end()));
  CHECK(trained.at("conv.weight") != init.at("conv.weight"));
  // Every other frozen parameter is its random init.
  const std::set<std::string> bn(kResnet8BnParameters.begin(), kResnet8BnParameters.end());
  for (const auto& [name, p] : trainer.model()->named_parameters()) {
    if (bn.count(name) || name == "conv.weight") continue;
    INFO("parameter " << name);
    CHECK(trained.at(name) == init.at(name));
  }
  const nlohmann::json config =
      nlohmann::json::parse(minidl::testing::read_file(o.out + "/config.json"));
  CHECK(config.at("stem_whitening") == true);
  CHECK(train::config_from_json(config).stem_whitening);
  CHECK_FALSE(train::config_to_json(train::bn_speedrun_options()).contains("stem_whitening"));
  // A model without a ResNet stem is refused, naming the option, before anything is written.
  train::TrainOptions vgg = o;
  vgg.model = "vgg11";
  vgg.out = minidl::testing::fresh_dir("bn_speedrun_whitening_vgg");
  try {
    train::Trainer(vgg).fit();
    FAIL("vgg11 with stem_whitening was accepted");
  } catch (const train::OptionError& e) {
    CHECK(e.param == "stem_whitening");
    CHECK(std::string(e.what()) ==
          "stem_whitening sets a resnet<D>[_<W>] stem; model vgg11 has none");
  }
  CHECK(train::run_files(vgg.out).empty());
  fs::remove_all(o.out);
  fs::remove_all(vgg.out);
}

TEST_CASE("train --recipe bn-speedrun: a short run, its lines, and --resume keeping the recipe",
          "[bn-speedrun][cli][slow]") {
  using minidl::testing::run_cli;
  const std::string dir = minidl::testing::fresh_dir("bn_speedrun_cli");
  const std::string common = " --data " + minidl::testing::data_dir() +
                             " --limit-train 256 --limit-test 100 --threads 2 --out " + dir;
  // Epoch 1 of 2, then stop: not evaluated yet.
  auto [s1, o1] = run_cli(
      "train --recipe bn-speedrun --model resnet8 --epochs 2 --seed 3 "
      "--stop-after 1" +
      common);
  INFO(o1);
  REQUIRE(s1 == 0);
  CHECK_THAT(o1, Catch::Contains("minidl train --recipe bn-speedrun: resnet8, "));
  CHECK_THAT(o1, Catch::Contains(" parameters, 672 trainable, 2 threads\n"));
  CHECK_THAT(o1, Catch::Contains("2 epochs of 4 batches of 64 images\n"));
  CHECK_THAT(o1, Catch::Contains("  adam, lr 0.1, schedule onecycle; weight decay 0, label "
                                 "smoothing 0, augmentation off\n"));
  CHECK_THAT(o1, Catch::Contains("  --train-only bn; "));
  CHECK_THAT(o1, Catch::Contains("test set evaluated after the last epoch"));
  CHECK_THAT(o1, Catch::Contains("stopped after 1 of 2 epochs, not evaluated"));
  CHECK_THAT(o1, Catch::Contains("\nwall time "));
  CHECK_THAT(o1, Catch::Contains(" min: training "));
  const nlohmann::json config =
      nlohmann::json::parse(minidl::testing::read_file(dir + "/config.json"));
  CHECK(config.at("recipe") == "bn-speedrun");
  CHECK(config.at("model") == "resnet8");
  // --resume alone continues it as bn-speedrun: the recipe's lines, evaluated at its end.
  auto [s2, o2] = run_cli("train --resume " + dir + " --data " + minidl::testing::data_dir());
  INFO(o2);
  REQUIRE(s2 == 0);
  CHECK_THAT(o2, Catch::Contains("minidl train --recipe bn-speedrun: resnet8, "));
  CHECK_THAT(o2, Catch::Contains("done: test accuracy "));
  CHECK_THAT(o2, Catch::Contains(" after 2 of 2 epochs; checkpoint "));
  CHECK_THAT(o2, Catch::Contains("wall time "));
  CHECK_THAT(o2, Catch::Contains(" (this invocation): training "));
  // A flag it fixes is refused on --resume too.
  auto [s3, o3] = run_cli("train --recipe bn-speedrun --resume " + dir + " --lr 0.2");
  CHECK(s3 == 1);
  CHECK_THAT(o3, Catch::Contains("--lr is fixed by --recipe bn-speedrun"));
  fs::remove_all(dir);
}

TEST_CASE(
    "train --recipe bn-speedrun --tta 2: the final TTA pass beside the plain accuracy, as eval "
    "gives them, kept by --resume, the training unchanged",
    "[bn-speedrun][cli][tta][slow]") {
  using minidl::testing::read_file;
  using minidl::testing::run_cli;
  using nlohmann::json;
  const std::string data = " --data " + minidl::testing::data_dir();
  const std::string dir = minidl::testing::fresh_dir("bn_speedrun_tta");
  const std::string plain_dir = minidl::testing::fresh_dir("bn_speedrun_tta_plain");
  const std::string common =
      " --model resnet8 --epochs 2 --seed 3 --limit-train 256 --limit-test 500 --threads 2" + data;
  // Epoch 1 of 2 with --tta 2, then stop: neither test pass has run.
  auto [s1, o1] =
      run_cli("train --recipe bn-speedrun --tta 2 --stop-after 1 --out " + dir + common);
  INFO(o1);
  REQUIRE(s1 == 0);
  CHECK_THAT(o1, Catch::Contains("test set evaluated after the last epoch, then with TTA level 2; "
                                 "run folder "));
  CHECK_THAT(o1, Catch::Contains("stopped after 1 of 2 epochs, not evaluated"));
  CHECK(json::parse(read_file(dir + "/config.json")).at("tta") == 2);
  const json stopped = json::parse(read_file(dir + "/results.json"));
  CHECK(stopped.at("tta") == 2);
  CHECK(stopped.at("test_accuracy_tta").is_null());
  // The epoch's checkpoint claims no TTA accuracy: the pass has not run.
  CHECK(load_safetensors(dir + "/model.safetensors").metadata.count("test_accuracy_tta") == 0);

  // --resume alone continues it with its --tta (config.json's) and ends with both accuracies.
  auto [s2, o2] = run_cli("train --resume " + dir + data);
  INFO(o2);
  REQUIRE(s2 == 0);
  // eval of the checkpoint, with --tta 2 and without: the exact accuracies.
  auto eval_accuracy = [&](const std::string& flags) {
    auto [status, out] = run_cli("eval --json --limit-test 500 --checkpoint " + dir +
                                 "/model.safetensors" + data + flags);
    INFO(out);
    REQUIRE(status == 0);
    return json::parse(out).at("accuracy").get<double>();
  };
  const double tta = eval_accuracy(" --tta 2"), plain = eval_accuracy("");
  // results.json has both: the TTA pass's exactly, the plain one as metrics.csv (6 digits).
  const json r = json::parse(read_file(dir + "/results.json"));
  CHECK(r.at("recipe") == "bn-speedrun");
  CHECK(r.at("finished") == true);
  CHECK(r.at("tta") == 2);
  CHECK(r.at("test_accuracy_tta").get<double>() == tta);
  CHECK(r.at("test_accuracy").get<double>() == Approx(plain).margin(1e-6));
  char done[160];
  std::snprintf(done, sizeof done,
                "done: test accuracy %.2f%% with TTA level 2, %.2f%% without, after 2 of 2 "
                "epochs; checkpoint ",
                100 * tta, 100 * plain);
  CHECK_THAT(o2, Catch::Contains(done));
  CHECK_THAT(o2, Catch::Contains(" (this invocation): training "));
  // The checkpoint's metadata too.
  const std::map<std::string, std::string> meta =
      load_safetensors(dir + "/model.safetensors").metadata;
  CHECK(meta.at("tta") == "2");
  CHECK(meta.at("test_accuracy_tta") == std::to_string(tta));
  // On these 500 images TTA 2 and the plain pass disagree: a run that ignored --tta would
  // report the plain accuracy twice.
  CHECK(tta != plain);

  // Without --tta the same run trains the same weights to the same plain accuracy; its
  // results.json reports level 0 and the plain accuracy in the TTA column, as before --tta.
  auto [s3, o3] = run_cli("train --recipe bn-speedrun --out " + plain_dir + common);
  INFO(o3);
  REQUIRE(s3 == 0);
  CHECK_THAT(o3, Catch::Contains("test set evaluated after the last epoch; run folder "));
  CHECK_THAT(o3, !Catch::Contains("TTA"));
  const json rp = json::parse(read_file(plain_dir + "/results.json"));
  CHECK(rp.at("tta") == 0);
  CHECK(rp.at("test_accuracy") == r.at("test_accuracy"));
  CHECK(rp.at("test_accuracy_tta") == r.at("test_accuracy"));
  CHECK_FALSE(json::parse(read_file(plain_dir + "/config.json")).contains("tta"));
  CHECK(minidl::testing::tensors_of(plain_dir + "/model.safetensors") ==
        minidl::testing::tensors_of(dir + "/model.safetensors"));
  fs::remove_all(dir);
  fs::remove_all(plain_dir);
}
