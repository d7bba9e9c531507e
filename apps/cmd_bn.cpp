// minidl bn-stats and minidl recalibrate-bn — looking inside a checkpoint's BatchNorm layers.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.hpp"
#include "core/kernels.hpp"
#include "core/moments.hpp"
#include "core/safetensors.hpp"
#include "data/loader.hpp"
#include "layers/batch_norm.hpp"
#include "train/loop.hpp"
#include "train/run_dir.hpp"

namespace minidl::app {

namespace {
struct Summary {
  double mean = 0, std = 0, min = 0, max = 0;
};
Summary summarize(const Tensor& t) {
  Summary s;
  if (!t.defined() || t.numel() == 0) return s;
  Moments m;
  m.add(t.data(), t.numel());
  const auto [lo, hi] = std::minmax_element(t.data(), t.data() + t.numel());
  s.min = *lo;
  s.max = *hi;
  s.mean = m.mean();
  s.std = std::sqrt(m.variance(/*unbiased=*/false));
  return s;
}

struct RecalibrateConfig {
  std::string checkpoint, data, out;
  int64_t batch_size = 500;
  int64_t limit = -1;  ///< first N training images (-1: all 50,000)
  int threads = 2;
};

/// The summary as {"mean", "std", "min", "max"} (NaN and infinity print as null).
nlohmann::ordered_json summary_json(const Summary& s) {
  return {{"mean", s.mean}, {"std", s.std}, {"min", s.min}, {"max", s.max}};
}

/// bn-stats: a table (or, with `json`, one JSON object, README "--json") of every BatchNorm's
/// gamma, beta and running statistics.
void run_bn_stats(const std::string& checkpoint, bool json) {
  Checkpoint ck;
  std::shared_ptr<Module> model = train::load_model(checkpoint, &ck, /*allow_nonfinite=*/true);
  auto meta = [&ck](const char* key) -> nlohmann::ordered_json {
    auto it = ck.metadata.find(key);
    return it == ck.metadata.end() ? nlohmann::ordered_json(nullptr)
                                   : nlohmann::ordered_json(it->second);
  };
  const std::pair<const char*, Tensor BatchNorm::*> tensors[] = {
      {"weight", &BatchNorm::weight},
      {"bias", &BatchNorm::bias},
      {"running_mean", &BatchNorm::running_mean},
      {"running_var", &BatchNorm::running_var}};
  if (json) {
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (auto& [name, bn] : model->named_modules_of<BatchNorm>()) {
      nlohmann::ordered_json layer = {{"name", name}, {"num_features", bn->num_features}};
      for (auto& [tname, member] : tensors) {
        const Tensor& t = (*bn).*member;
        layer[tname] = t.defined() ? summary_json(summarize(t)) : nlohmann::ordered_json(nullptr);
      }
      layers.push_back(layer);
    }
    nlohmann::ordered_json world = meta("world_size");
    if (world.is_string() && !world.get<std::string>().empty() &&
        world.get<std::string>().find_first_not_of("0123456789") == std::string::npos &&
        world.get<std::string>().size() < 10)
      world = std::stoi(world.get<std::string>());
    nlohmann::ordered_json j = {{"checkpoint", checkpoint},
                                {"model", meta("model")},
                                {"world_size", world},
                                {"running_statistics", meta("running_statistics")},
                                {"layers", layers}};
    std::cout << j.dump() << std::endl;
    return;
  }
  if (auto it = ck.metadata.find("running_statistics"); it != ck.metadata.end()) {
    std::printf("data-parallel run of %s processes; running statistics: %s\n",
                ck.metadata.count("world_size") ? ck.metadata.at("world_size").c_str() : "?",
                it->second.c_str());
  }
  std::printf("%-28s %5s  %-12s %9s %9s %9s %9s\n", "BatchNorm layer", "C", "tensor", "mean", "std",
              "min", "max");
  int layers = 0;
  for (auto& [name, bn] : model->named_modules_of<BatchNorm>()) {
    ++layers;
    bool first = true;
    for (auto& [tname, member] : tensors) {
      const Tensor& t = (*bn).*member;
      if (!t.defined()) continue;
      Summary s = summarize(t);
      std::printf("%-28s %5s  %-12s %9.4f %9.4f %9.4f %9.4f\n", first ? name.c_str() : "",
                  first ? std::to_string(bn->num_features).c_str() : "", tname, s.mean, s.std,
                  s.min, s.max);
      first = false;
    }
  }
  std::printf("%d BatchNorm layers (weight = gamma, bias = beta)\n", layers);
}

void run_recalibrate(const RecalibrateConfig& cfg) {
  set_num_threads(cfg.threads);
  Checkpoint ck;
  std::shared_ptr<Module> model = train::load_model(cfg.checkpoint, &ck);
  if (model->modules_of<BatchNorm>().empty()) {  // nothing to recalibrate: no file is written
    throw std::invalid_argument("--checkpoint " + cfg.checkpoint + ": its model " +
                                ck.metadata["model"] +
                                " has no BatchNorm layer, so there are no statistics to "
                                "recalibrate (nothing written to " +
                                cfg.out + ")");
  }
  data::Dataset train = data::load_cifar10(resolve_data_dir(cfg.data), true, cfg.limit);
  const int n = train::recalibrate_on(*model, train, cfg.batch_size,
                                      train::checkpoint_normalization(ck, cfg.checkpoint));
  auto meta = ck.metadata;
  meta["bn_statistics"] = "population over " + std::to_string(train.size()) +
                          " training images (minidl recalibrate-bn)";
  save_safetensors(cfg.out, model->state_dict(), meta);
  std::printf("recalibrated %d BatchNorm layers over %lld training images -> %s\n", n,
              static_cast<long long>(train.size()), cfg.out.c_str());
}

}  // namespace

Command add_bn_stats(CLI::App& app) {
  auto checkpoint = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* b = app.add_subcommand("bn-stats",
                               "per BatchNorm layer of a checkpoint: the mean, std, min and max of "
                               "gamma, beta, running_mean and running_var");
  b->add_option("--checkpoint", *checkpoint, "the model.safetensors file to read")
      ->type_name("FILE")
      ->required();
  b->add_flag("--json", *json, "print one JSON object (schema in README.md)");
  return {b, [checkpoint, json] { run_bn_stats(*checkpoint, *json); }};
}

Command add_recalibrate(CLI::App& app) {
  auto c = std::make_shared<RecalibrateConfig>();
  auto* r = app.add_subcommand("recalibrate-bn",
                               "recompute every BatchNorm's population mean and unbiased variance "
                               "over the training set (inference mode, layer after layer) and "
                               "save a new checkpoint");
  r->add_option("--checkpoint", c->checkpoint, "the model.safetensors file to read")
      ->type_name("FILE")
      ->required();
  r->add_option("--data", c->data,
                "the CIFAR-10 binary folder (cifar-10-batches-bin); $MINIDL_DATA when not given")
      ->type_name("DIR");
  r->add_option("--out", c->out, "the new checkpoint's file")->type_name("FILE")->required();
  r->add_option("--batch-size", c->batch_size, "images per batch")
      ->capture_default_str()
      ->check(integer_in(1, 65536));
  r->add_option("--limit-train,--limit", c->limit,
                "recalibrate on the first N training images only")
      ->check(integer_in(1, 50000));
  r->add_option("--threads", c->threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  return {r, [c] { run_recalibrate(*c); }};
}

}  // namespace minidl::app
