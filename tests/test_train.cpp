// End-to-end: a seeded training run on real CIFAR-10 (2,000 images), determinism, resume, and
// the CLI's handling of bad input. Reads the data from $MINIDL_DATA (set by CMake for ctest).
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/commands.hpp"
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
  app::TrainConfig cfg = minidl::testing::small_config("train", 3, 2000);
  const std::string dir = cfg.out;
  app::TrainResult r = app::run_train(cfg);
  INFO("test accuracy " << r.final_test_accuracy);
  CHECK(r.final_test_accuracy >= 0.30);  // chance is 0.10
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
    CHECK(app::run_eval(e) == r.final_test_accuracy);
  }
}

TEST_CASE("same seed gives the same run and resume continues where the run stopped", "[train][slow]") {
  app::TrainConfig ca = minidl::testing::small_config("det_a", 2, 640);
  app::TrainConfig cb = minidl::testing::small_config("det_b", 2, 640);
  const std::string a = ca.out, b = cb.out;
  app::run_train(ca);
  // b: interrupted after one epoch, then resumed.
  cb.stop_after = 1;
  CHECK(app::run_train(cb).epochs_run == 1);
  app::TrainConfig resume;
  resume.resume = b;
  resume.quiet = true;
  resume.threads = ca.threads;
  app::TrainResult resumed = app::run_train(resume);
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
  app::TrainConfig c = minidl::testing::small_config("nan", 1, 256);
  const std::string dir = c.out;
  app::run_train(c);
  const auto before = fs::last_write_time(dir + "/model.safetensors");
  const auto size = fs::file_size(dir + "/model.safetensors");
  app::TrainConfig bad = c;
  bad.resume = dir;
  bad.epochs = 2;
  bad.epochs_set_by_user = true;  // extends the run (and its schedule) to two epochs
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
  CHECK_THROWS_WITH(app::run_train(bad), Catch::Contains("loss is") && Catch::Contains("epoch 2"));
  CHECK(fs::last_write_time(dir + "/model.safetensors") == before);
  CHECK(fs::file_size(dir + "/model.safetensors") == size);
}

TEST_CASE("predict prints the top 3 classes with probabilities for an image file", "[cli]") {
  app::TrainConfig c = minidl::testing::small_config("predict", 1, 128);
  c.limit_test = 100;
  app::run_train(c);
  // A test image (label 3, cat) as a 64x64 PNG: predict must read it and resize it.
  data::Dataset ds = data::load_cifar10(data_dir(), false, 1);
  std::vector<uint8_t> rgb(64 * 64 * 3);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int ch = 0; ch < 3; ++ch) rgb[(y * 64 + x) * 3 + ch] = ds.images[ch * 1024 + (y / 2) * 32 + x / 2];
  const std::string png = c.out + "/cat.png";
  REQUIRE(stbi_write_png(png.c_str(), 64, 64, 3, rgb.data(), 64 * 3) != 0);
  auto [status, out] = run_cli("predict --checkpoint " + c.out + "/model.safetensors " + png);
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Catch::Contains(png));
  int lines_with_percent = 0;
  double total = 0;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.find('%') == std::string::npos) continue;
    ++lines_with_percent;
    total += std::stod(line.substr(line.find_last_of(' ', line.size() - 2) + 1));
  }
  CHECK(lines_with_percent == 3);
  CHECK(total > 0.0);
  CHECK(total <= 100.01);
}
