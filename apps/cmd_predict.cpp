// minidl predict — the top classes with probabilities for image files (PNG/JPEG/BMP).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "apps/cli.hpp"
#include "core/autograd.hpp"
#include "core/kernels.hpp"
#include "data/cifar10.hpp"
#include "data/image.hpp"
#include "train/run_dir.hpp"

namespace minidl::app {

namespace {
struct PredictConfig {
  std::string checkpoint;
  std::vector<std::string> images;
  int64_t top = 3;
  int threads = 2;
  bool json = false;
};

/// Per image, its `top` classes and their softmax probabilities: a path line and a line per
/// class, or with cfg.json one JSON object (README "--json").
void run_predict(const PredictConfig& cfg) {
  set_num_threads(cfg.threads);
  Checkpoint ck;
  std::shared_ptr<Module> model = train::load_model(cfg.checkpoint, &ck);
  const data::Normalization norm = train::checkpoint_normalization(ck, cfg.checkpoint);
  NoGradGuard no_grad;
  const auto& names = data::cifar10_class_names();
  nlohmann::ordered_json images = nlohmann::ordered_json::array();
  for (const std::string& path : cfg.images) {
    Tensor logits = (*model)(data::load_image(path, norm));
    const int64_t K = logits.size(1);
    std::vector<double> p(K);
    const float* z = logits.data();
    const float mx = *std::max_element(z, z + K);
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += p[k] = std::exp(static_cast<double>(z[k] - mx));
    std::vector<int64_t> idx(K);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
    const int64_t shown = std::min<int64_t>(cfg.top, K);
    if (cfg.json) {
      nlohmann::ordered_json top = nlohmann::ordered_json::array();
      for (int64_t i = 0; i < shown; ++i) {
        top.push_back(
            {{"class", names[idx[i]]}, {"index", idx[i]}, {"probability", p[idx[i]] / sum}});
      }
      images.push_back({{"path", path}, {"top", top}});
      continue;
    }
    std::printf("%s\n", path.c_str());
    for (int64_t i = 0; i < shown; ++i) {
      std::printf("  %-12s %6.2f%%\n", names[idx[i]].c_str(), 100.0 * p[idx[i]] / sum);
    }
  }
  if (cfg.json) {
    const nlohmann::ordered_json j = {{"checkpoint", cfg.checkpoint}, {"images", images}};
    std::cout << j.dump() << std::endl;
  }
}

}  // namespace

Command add_predict(CLI::App& app) {
  auto c = std::make_shared<PredictConfig>();
  auto* p = app.add_subcommand(
      "predict", "the most probable classes of image files (PNG, JPEG, BMP; resized to 32x32)");
  p->add_option("--checkpoint", c->checkpoint, "the model.safetensors file to classify with")
      ->type_name("FILE")
      ->required();
  p->add_option("images", c->images, "the image files")->required();
  p->add_option("--top", c->top, "classes to show per image")
      ->capture_default_str()
      ->check(integer_in(1, 10));
  p->add_option("--threads", c->threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  p->add_flag("--json", c->json, "print one JSON object (schema in README.md)");
  return {p, [c] { run_predict(*c); }};
}

}  // namespace minidl::app
