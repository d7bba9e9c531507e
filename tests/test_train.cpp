// End-to-end: a seeded training run on real CIFAR-10 (2,000 images), determinism, resume, and
// the CLI's handling of bad input. Reads the data from $MINIDL_DATA (set by CMake for ctest).
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/cli.hpp"
#include "experiments/bn_only.hpp"
#include "train/trainer.hpp"
#include "core/autograd.hpp"
#include "data/loader.hpp"
#include "core/safetensors.hpp"
#include "data/cifar10.hpp"
#include "test_util.hpp"

#include <stb/stb_image_write.h>

using minidl::testing::data_dir;
using minidl::testing::fresh_dir;
using minidl::testing::run_cli;

using namespace minidl;
namespace fs = std::filesystem;

TEST_CASE("a seeded run on 2,000 CIFAR-10 images beats chance by far, and eval agrees",
          "[train][slow]") {
  train::TrainOptions cfg = minidl::testing::small_options("train", 3, 2000);
  const std::string dir = cfg.out;
  train::RunResult r = minidl::testing::fit(cfg);
  INFO("test accuracy " << r.test_accuracy);
  CHECK(r.test_accuracy >= 0.30);  // chance is 0.10
  CHECK(fs::exists(dir + "/metrics.csv"));
  CHECK(fs::exists(dir + "/config.json"));
  Checkpoint ck = load_safetensors(dir + "/model.safetensors");
  CHECK(ck.metadata.at("model") == "resnet8");
  CHECK(ck.metadata.at("epoch") == "3");
  // eval reproduces training's final accuracy, whatever the batch size.
  for (int bs : {1, 1000}) {
    app::EvalConfig e;
    e.checkpoint = dir + "/model.safetensors";
    e.data = data_dir();
    e.limit = 1000;
    e.batch_size = bs;
    e.json = true;
    CHECK(app::run_eval(e) == r.test_accuracy);
  }
}

TEST_CASE("same seed gives the same run and resume continues where the run stopped",
          "[train][slow]") {
  train::TrainOptions ca = minidl::testing::small_options("det_a", 2, 640);
  train::TrainOptions cb = minidl::testing::small_options("det_b", 2, 640);
  const std::string a = ca.out, b = cb.out;
  minidl::testing::fit(ca);
  // b: interrupted after one epoch, then resumed.
  CHECK(minidl::testing::fit(cb, 1).epochs_run == 1);
  train::RunResult resumed = minidl::testing::resume(b, 0, ca.threads);
  CHECK(resumed.epochs_run == 1);  // only the missing epoch ran
  Checkpoint ka = load_safetensors(a + "/model.safetensors");
  Checkpoint kb = load_safetensors(b + "/model.safetensors");
  REQUIRE(ka.tensors.size() == kb.tensors.size());
  for (size_t i = 0; i < ka.tensors.size(); ++i) {
    INFO(ka.tensors[i].first);
    CHECK(ka.tensors[i].second.vec() == kb.tensors[i].second.vec());
  }
}

TEST_CASE("the CLI rejects bad flags and inputs with a message naming them", "[cli][errors]") {
  auto [s1, o1] = run_cli("train --epochs 0 --data " + data_dir());
  CHECK(s1 != 0);
  CHECK_THAT(o1, Catch::Contains("--epochs"));
  auto [s2, o2] = run_cli("train --data /nonexistent/cifar --epochs 1 --out " + fresh_dir("cli"));
  CHECK(s2 != 0);
  CHECK_THAT(o2, Catch::Contains("/nonexistent/cifar"));
  auto [s3, o3] = run_cli("eval --checkpoint /nonexistent/m.safetensors --data " + data_dir());
  CHECK(s3 != 0);
  CHECK_THAT(o3, Catch::Contains("/nonexistent/m.safetensors"));
  auto [s4, o4] = run_cli("train --model resnet21 --epochs 1 --limit-train 100 --data " +
                          data_dir() + " --out " + fresh_dir("cli2"));
  CHECK(s4 != 0);
  CHECK_THAT(o4, Catch::Contains("6k + 2"));
  auto [s5, o5] = run_cli("train --optimizer rmsprop --data " + data_dir());
  CHECK(s5 != 0);
  CHECK_THAT(o5, Catch::Contains("--optimizer"));
  auto [s6, o6] = run_cli("predict --checkpoint /nonexistent/m.safetensors x.png");
  CHECK(s6 != 0);
  CHECK_THAT(o6, Catch::Contains("/nonexistent/m.safetensors"));
}

TEST_CASE("a diverging run stops with a NaN-loss error and keeps the saved checkpoint",
          "[train][errors]") {
  train::TrainOptions c = minidl::testing::small_options("nan", 1, 256);
  const std::string dir = c.out;
  minidl::testing::fit(c);
  const auto before = fs::last_write_time(dir + "/model.safetensors");
  const auto size = fs::file_size(dir + "/model.safetensors");
  // Resume keeps the saved recipe; make it diverge by editing the saved lr.
  {
    std::ifstream in(dir + "/config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string j = ss.str();
    const auto pos = j.find("\"lr\":");
    REQUIRE(pos != std::string::npos);
    j.replace(pos, j.find(',', pos) - pos, "\"lr\": 1e30");
    std::ofstream(dir + "/config.json") << j;
  }
  // Resuming with 2 epochs extends the run (and its schedule) to two epochs.
  CHECK_THROWS_WITH(minidl::testing::resume(dir, 2),
                    Catch::Contains("loss is") && Catch::Contains("epoch 2"));
  CHECK(fs::last_write_time(dir + "/model.safetensors") == before);
  CHECK(fs::file_size(dir + "/model.safetensors") == size);
}

TEST_CASE("predict prints the top 3 classes with probabilities for an image file", "[cli]") {
  train::TrainOptions c = minidl::testing::small_options("predict", 1, 128);
  c.limit_test = 100;
  minidl::testing::fit(c);
  // Two test images: one as a 32x32 PNG (read as is: its tensor equals to_tensor's), and the
  // same image as a 64x64 PNG (predict must read it and resize it).
  data::Dataset ds = data::load_cifar10(data_dir(), false, 1);
  std::vector<uint8_t> rgb32(32 * 32 * 3), rgb64(64 * 64 * 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      for (int ch = 0; ch < 3; ++ch)
        rgb32[(y * 32 + x) * 3 + ch] = ds.images[ch * 1024 + y * 32 + x];
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int ch = 0; ch < 3; ++ch)
        rgb64[(y * 64 + x) * 3 + ch] = ds.images[ch * 1024 + (y / 2) * 32 + x / 2];
  const std::string png32 = c.out + "/cat32.png", png64 = c.out + "/cat64.png";
  REQUIRE(stbi_write_png(png32.c_str(), 32, 32, 3, rgb32.data(), 32 * 3) != 0);
  REQUIRE(stbi_write_png(png64.c_str(), 64, 64, 3, rgb64.data(), 64 * 3) != 0);
  auto [status, out] =
      run_cli("predict --checkpoint " + c.out + "/model.safetensors " + png32 + " " + png64);
  INFO(out);
  REQUIRE(status == 0);
  // Expected: softmax of the checkpoint's logits for the image, the 3 largest in order.
  Checkpoint ck;
  auto model = train::load_model(c.out + "/model.safetensors", &ck);
  NoGradGuard no_grad;
  const Tensor logits =
      (*model)(data::to_tensor(ds, 0, 1, train::checkpoint_normalization(ck, "")));
  std::vector<std::pair<double, int>> prob;
  double sum = 0;
  for (int k = 0; k < 10; ++k) sum += std::exp(static_cast<double>(logits.data()[k]));
  for (int k = 0; k < 10; ++k)
    prob.push_back({std::exp(static_cast<double>(logits.data()[k])) / sum, k});
  std::stable_sort(prob.begin(), prob.end(), [](auto& a, auto& b) { return a.first > b.first; });
  // The printed lines: "<path>", then three "  <class> <p>%" lines, for each image.
  std::istringstream in(out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 8);
  CHECK(lines[0] == png32);
  CHECK(lines[4] == png64);
  double previous = 101.0;
  for (int i = 0; i < 3; ++i) {
    std::istringstream row(lines[1 + i]);
    std::string cls, pct;
    row >> cls >> pct;
    INFO("line " << lines[1 + i]);
    CHECK(cls == data::cifar10_class_names()[prob[i].second]);
    const double printed = std::stod(pct.substr(0, pct.size() - 1));
    CHECK(printed == Approx(100.0 * prob[i].first).margin(0.006));  // printed with 2 decimals
    CHECK(printed <= previous);                                     // in decreasing order
    previous = printed;
  }
}
