// minidl eval — test-set loss and accuracy in inference mode, per-class accuracy, confusion
// matrix; --json prints one JSON object.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "apps/engine.hpp"
#include "core/kernels.hpp"

namespace minidl::app {

double run_eval(const EvalConfig& cfg) {
  if (!is_one_of(cfg.bn_stats, eval_bn_stats_modes())) {
    throw std::invalid_argument("--bn-stats must be " + choices_text(eval_bn_stats_modes()) +
                                ", got \"" + cfg.bn_stats + "\"");
  }
  set_num_threads(cfg.threads);
  Checkpoint ck;
  std::shared_ptr<Module> model = load_model(cfg.checkpoint, &ck, cfg.allow_nonfinite);
  const data::Normalization norm = checkpoint_normalization(ck, cfg.checkpoint);
  const std::string dir = resolve_data_dir(cfg.data);
  data::Dataset test = data::load_cifar10(dir, false, cfg.limit);
  if (cfg.bn_stats == "population") {
    data::Dataset train = data::load_cifar10(dir, true, cfg.recalibrate_limit);
    recalibrate_on(*model, train, 500, norm);
  }
  EvalResult r;
  try {
    r = evaluate(*model, test, cfg.batch_size,
                 cfg.bn_stats == "batch" ? BnStats::kBatch : BnStats::kRunning, norm, cfg.tta);
  } catch (const std::invalid_argument& e) {
    if (cfg.bn_stats != "batch") throw;
    throw std::invalid_argument(std::string("--bn-stats batch with --batch-size ") +
                                std::to_string(cfg.batch_size) + ": " + e.what());
  }
  const auto& names = data::cifar10_class_names();
  if (cfg.json) {
    nlohmann::json j;
    j["checkpoint"] = cfg.checkpoint;
    j["accuracy"] = r.accuracy();
    j["loss"] = r.loss;
    j["correct"] = r.correct;
    j["count"] = r.count;
    j["batch_size"] = cfg.batch_size;
    j["bn_stats"] = cfg.bn_stats;
    j["tta"] = cfg.tta;
    nlohmann::json per_class = nlohmann::json::object();
    for (size_t c = 0; c < names.size(); ++c) {
      int64_t total = 0;
      for (int64_t v : r.confusion[c]) total += v;
      per_class[names[c]] = total ? static_cast<double>(r.confusion[c][c]) / total : 0.0;
    }
    j["per_class_accuracy"] = per_class;
    j["confusion"] = r.confusion;
    std::cout << j.dump() << std::endl;
    return r.accuracy();
  }
  std::printf("checkpoint %s, %lld test images, batch size %lld, BN statistics: %s, TTA level %d\n",
              cfg.checkpoint.c_str(), static_cast<long long>(r.count),
              static_cast<long long>(cfg.batch_size), cfg.bn_stats.c_str(), cfg.tta);
  std::printf("test loss %.4f  accuracy %.2f%% (%lld/%lld)\n\n", r.loss, 100 * r.accuracy(),
              static_cast<long long>(r.correct), static_cast<long long>(r.count));
  std::printf("%-12s %8s\n", "class", "accuracy");
  for (size_t c = 0; c < names.size(); ++c) {
    int64_t total = 0;
    for (int64_t v : r.confusion[c]) total += v;
    std::printf("%-12s %7.2f%%\n", names[c].c_str(),
                total ? 100.0 * r.confusion[c][c] / total : 0.0);
  }
  std::printf("\nconfusion matrix (rows: true class, columns: predicted)\n%-12s", "");
  for (size_t c = 0; c < names.size(); ++c) std::printf(" %5.5s", names[c].c_str());
  std::printf("\n");
  for (size_t c = 0; c < names.size(); ++c) {
    std::printf("%-12s", names[c].c_str());
    for (int64_t v : r.confusion[c]) std::printf(" %5lld", static_cast<long long>(v));
    std::printf("\n");
  }
  return r.accuracy();
}

}  // namespace minidl::app
