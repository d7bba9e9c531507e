// minidl bn-stats and minidl recalibrate-bn — looking inside a checkpoint's BatchNorm layers.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "core/moments.hpp"
#include "apps/engine.hpp"
#include "core/kernels.hpp"
#include "core/safetensors.hpp"
#include "data/loader.hpp"
#include "layers/batch_norm.hpp"

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
}  // namespace

void run_bn_stats(const std::string& checkpoint) {
  std::shared_ptr<Module> model = load_model(checkpoint, nullptr, /*allow_nonfinite=*/true);
  std::printf("%-28s %5s  %-12s %9s %9s %9s %9s\n", "BatchNorm layer", "C", "tensor", "mean", "std",
              "min", "max");
  int layers = 0;
  for (auto& [name, bn] : model->named_modules_of<BatchNorm>()) {
    ++layers;
    const std::pair<const char*, const Tensor*> rows[] = {{"weight", &bn->weight},
                                                          {"bias", &bn->bias},
                                                          {"running_mean", &bn->running_mean},
                                                          {"running_var", &bn->running_var}};
    bool first = true;
    for (auto& [tname, t] : rows) {
      if (!t->defined()) continue;
      Summary s = summarize(*t);
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
  std::shared_ptr<Module> model = load_model(cfg.checkpoint, &ck);
  data::Dataset train = data::load_cifar10(resolve_data_dir(cfg.data), true, cfg.limit);
  const int n =
      recalibrate_on(*model, train, cfg.batch_size, checkpoint_normalization(ck, cfg.checkpoint));
  auto meta = ck.metadata;
  meta["bn_statistics"] = "population over " + std::to_string(train.size()) +
                          " training images (minidl recalibrate-bn)";
  save_safetensors(cfg.out, model->state_dict(), meta);
  std::printf("recalibrated %d BatchNorm layers over %lld training images -> %s\n", n,
              static_cast<long long>(train.size()), cfg.out.c_str());
}

}  // namespace minidl::app
