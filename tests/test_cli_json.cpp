// minidl tests — what scripts read from the command line: `--version`, and the `--json` objects
// of bn-stats, predict and eval (their schemas are in README.md), parsed here.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "core/autograd.hpp"
#include "core/simd.hpp"
#include "core/moments.hpp"
#include "data/cifar10.hpp"
#include "data/loader.hpp"
#include "layers/batch_norm.hpp"
#include "test_util.hpp"
#include "train/run_dir.hpp"
#include <stb/stb_image_write.h>

using namespace minidl;
using minidl::testing::data_dir;
using minidl::testing::run_cli;

using minidl::testing::lines_of;

namespace {

/// A one-epoch resnet8 checkpoint (128 training images) in a fresh folder `name`.
std::string small_checkpoint(const std::string& name) {
  train::TrainOptions c = minidl::testing::small_options(name, 1, 128);
  c.limit_test = 100;
  minidl::testing::fit(c);
  return c.out + "/model.safetensors";
}
}  // namespace

TEST_CASE("minidl --version names the version, git commit, build type, BLAS and SIMD path",
          "[cli]") {
  auto [status, out] = run_cli("--version");
  INFO(out);
  REQUIRE(status == 0);
  CHECK(out == app::version_text() + "\n");
  const std::vector<std::string> lines = lines_of(out);
  REQUIRE(lines.size() >= 4);
  CHECK(std::regex_match(lines[0], std::regex(R"(minidl [0-9]+\.[0-9]+\.[0-9]+ \(git )"
                                              R"(([0-9a-f]{7,}(-dirty)?|unknown.*), at )"
                                              R"(configure time\))")));
  CHECK(std::regex_match(lines[1], std::regex("build type: [A-Za-z]+")));
  CHECK(std::regex_match(lines[2], std::regex("BLAS: OpenBLAS [0-9.]+.*")));
  CHECK(std::regex_match(lines[3], std::regex("SIMD: (native|sse2|avx2|avx512) kernels, "
                                              "((128|256|512)-bit vectors .*|none.*)")));
  CHECK(lines[3].find(simd::active().name) != std::string::npos);
  // --version needs no subcommand (which is otherwise required).
  auto [bare, bare_out] = run_cli("");
  CHECK(bare != 0);
}

TEST_CASE("bn-stats --json gives every BatchNorm's statistics as one JSON object", "[cli]") {
  const std::string ck = small_checkpoint("bn_stats_json");
  auto [status, out] = run_cli("bn-stats --json --checkpoint " + ck);
  INFO(out);
  REQUIRE(status == 0);
  const nlohmann::json j = nlohmann::json::parse(out);
  CHECK(j.at("checkpoint") == ck);
  CHECK(j.at("model") == "resnet8");
  CHECK(j.at("world_size").is_null());
  auto model = train::load_model(ck, nullptr);
  const auto bns = model->named_modules_of<BatchNorm>();
  const nlohmann::json& layers = j.at("layers");
  REQUIRE(layers.size() == bns.size());
  for (size_t i = 0; i < bns.size(); ++i) {
    const auto& [name, bn] = bns[i];
    INFO(name);
    CHECK(layers[i].at("name") == name);
    CHECK(layers[i].at("num_features") == bn->num_features);
    const std::pair<const char*, const Tensor*> tensors[] = {{"weight", &bn->weight},
                                                             {"bias", &bn->bias},
                                                             {"running_mean", &bn->running_mean},
                                                             {"running_var", &bn->running_var}};
    for (const auto& [key, t] : tensors) {
      Moments m;
      m.add(t->data(), t->numel());
      const float* v = t->data();
      const auto [lo, hi] = std::minmax_element(v, v + t->numel());
      const nlohmann::json& s = layers[i].at(key);
      CHECK(s.at("mean").get<double>() == Approx(m.mean()).margin(1e-12));
      CHECK(s.at("std").get<double>() ==
            Approx(std::sqrt(m.variance(/*unbiased=*/false))).margin(1e-12));
      CHECK(s.at("min").get<double>() == *lo);
      CHECK(s.at("max").get<double>() == *hi);
    }
  }
}

TEST_CASE("predict --json gives each image's top classes and probabilities", "[cli]") {
  const std::string ck = small_checkpoint("predict_json");
  const std::string dir = ck.substr(0, ck.rfind('/'));
  data::Dataset ds = data::load_cifar10(data_dir(), false, 2);
  std::vector<std::string> paths;
  for (int i = 0; i < 2; ++i) {
    std::vector<uint8_t> rgb(32 * 32 * 3);
    for (int p = 0; p < 32 * 32; ++p)
      for (int ch = 0; ch < 3; ++ch) rgb[p * 3 + ch] = ds.images[i * 3072 + ch * 1024 + p];
    paths.push_back(dir + "/image" + std::to_string(i) + ".png");
    REQUIRE(stbi_write_png(paths.back().c_str(), 32, 32, 3, rgb.data(), 32 * 3) != 0);
  }
  auto [status, out] =
      run_cli("predict --json --top 4 --checkpoint " + ck + " " + paths[0] + " " + paths[1]);
  INFO(out);
  REQUIRE(status == 0);
  const nlohmann::json j = nlohmann::json::parse(out);
  CHECK(j.at("checkpoint") == ck);
  REQUIRE(j.at("images").size() == 2);
  Checkpoint meta;
  auto model = train::load_model(ck, &meta);
  NoGradGuard no_grad;
  const Tensor logits =
      (*model)(data::to_tensor(ds, 0, 2, train::checkpoint_normalization(meta, ck)));
  for (int i = 0; i < 2; ++i) {
    const nlohmann::json& image = j["images"][i];
    CHECK(image.at("path") == paths[i]);
    const nlohmann::json& top = image.at("top");
    REQUIRE(top.size() == 4);
    // Expected: the softmax of the image's logits, largest first.
    const float* z = logits.data() + i * 10;
    double sum = 0;
    for (int k = 0; k < 10; ++k) sum += std::exp(static_cast<double>(z[k]));
    double previous = 1.0;
    for (const nlohmann::json& entry : top) {
      const int k = entry.at("index").get<int>();
      CHECK(entry.at("class") == data::cifar10_class_names()[k]);
      const double p = entry.at("probability").get<double>();
      CHECK(p == Approx(std::exp(static_cast<double>(z[k])) / sum).epsilon(1e-5));
      CHECK(p <= previous);
      previous = p;
    }
  }
}

TEST_CASE("eval marks a class with no test image n/a (null in --json), not 0.00%", "[cli]") {
  const std::string ck = small_checkpoint("eval_absent_class");
  // The first 5 test images are a cat, two ships, an airplane and a frog: 6 classes absent.
  data::Dataset ds = data::load_cifar10(data_dir(), false, 5);
  std::vector<bool> present(10, false);
  for (int32_t label : ds.labels) present[label] = true;
  auto [status, out] = run_cli("eval --json --limit 5 --checkpoint " + ck);
  INFO(out);
  REQUIRE(status == 0);
  const nlohmann::json per_class = nlohmann::json::parse(out).at("per_class_accuracy");
  int absent = 0;
  for (int c = 0; c < 10; ++c) {
    const nlohmann::json& v = per_class.at(data::cifar10_class_names()[c]);
    CHECK(v.is_null() == !present[c]);
    absent += !present[c];
  }
  CHECK(absent > 0);
  auto [text_status, text] = run_cli("eval --limit 5 --checkpoint " + ck);
  INFO(text);
  REQUIRE(text_status == 0);
  // The 10 lines after the "class    accuracy" header: "<class padded to 12> <value>".
  const std::vector<std::string> lines = lines_of(text);
  const auto header = std::find_if(lines.begin(), lines.end(),
                                   [](const std::string& l) { return l.rfind("class ", 0) == 0; });
  REQUIRE(lines.end() - header > 10);
  for (int c = 0; c < 10; ++c) {
    std::istringstream row(header[1 + c]);
    std::string name, value;
    row >> name >> value;
    CHECK(name == data::cifar10_class_names()[c]);
    if (present[c])
      CHECK(value.back() == '%');
    else
      CHECK(value == "n/a");
  }
}
