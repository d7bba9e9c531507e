// minidl eval — test-set loss and accuracy in inference mode, per-class accuracy, confusion
// matrix; --json prints one JSON object.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "apps/cli.hpp"
#include "apps/progress.hpp"
#include "core/system.hpp"
#include "core/kernels.hpp"
#include "train/loop.hpp"
#include "train/run_dir.hpp"

namespace minidl::app {

const EnumTable<EvalBnStats>& enum_table(EvalBnStats) {
  static const EnumTable<EvalBnStats> t = {
      {EvalBnStats::kRunning, "running", "inference mode"},
      {EvalBnStats::kPopulation, "population", "recalibrated over the training set first"},
      {EvalBnStats::kBatch, "batch", "each test batch's own"}};
  return t;
}

namespace {
/// The test images of true class c (row c of the confusion matrix).
int64_t class_total(const train::EvalResult& r, size_t c) {
  int64_t total = 0;
  for (int64_t v : r.confusion.at(c)) total += v;
  return total;
}
}  // namespace

double run_eval(const EvalConfig& cfg) {
  using namespace train;
  set_num_threads(cfg.threads);
  Checkpoint ck;
  std::shared_ptr<Module> model;
  try {
    model = load_model(cfg.checkpoint, &ck, cfg.allow_nonfinite);
  } catch (const NonFiniteCheckpoint& e) {
    throw std::runtime_error(std::string(e.what()) +
                             ". Pass --allow-nonfinite to evaluate it anyway");
  }
  const data::Normalization norm = checkpoint_normalization(ck, cfg.checkpoint);
  const std::string dir = resolve_data_dir(cfg.data);
  data::Dataset test = data::load_cifar10(dir, false, cfg.limit);
  if (cfg.bn_stats == EvalBnStats::kPopulation) {
    data::Dataset train = data::load_cifar10(dir, true, cfg.recalibrate_limit);
    recalibrate_on(*model, train, 500, norm);
  }
  EvalResult r;
  const bool batch = cfg.bn_stats == EvalBnStats::kBatch;
  // On a terminal, a progress line through the test pass (apps/progress.hpp).
  std::function<void(const EvalProgress&)> progress;
  if (progress_enabled()) {
    const auto start = std::chrono::steady_clock::now();
    progress = [start](const EvalProgress& p) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      char acc[32];
      std::snprintf(acc, sizeof acc, "acc %5.2f%%", p.images ? 100.0 * p.correct / p.images : 0.0);
      const double left = p.images ? secs / p.images * (p.total - p.images) : 0.0;
      draw_progress(progress_text(
          "eval", static_cast<double>(p.images) / p.total,
          {{0, progress_count(p.images, p.total)},
           {2, acc},
           {3, with_thousands(secs > 0 ? std::llround(p.images / secs) : 0) + " img/s"},
           {1, "ETA " + format_duration(left)}}));
    };
  }
  try {
    r = evaluate(*model, test, cfg.batch_size, batch ? BnStats::kBatch : BnStats::kRunning, norm,
                 cfg.tta, progress);
    clear_progress();
  } catch (const std::invalid_argument& e) {
    if (!batch) throw std::invalid_argument(with_flag_names(e.what()));
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
    j["bn_stats"] = name_of(cfg.bn_stats);
    j["tta"] = cfg.tta;
    nlohmann::json per_class = nlohmann::json::object();
    for (size_t c = 0; c < names.size(); ++c) {
      const int64_t total = class_total(r, c);
      per_class[names[c]] =
          total ? nlohmann::json(static_cast<double>(r.confusion[c][c]) / total) : nullptr;
    }
    j["per_class_accuracy"] = per_class;
    j["confusion"] = r.confusion;
    // A path of any bytes: invalid UTF-8 is shown as U+FFFD (JSON is UTF-8).
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return r.accuracy();
  }
  std::printf("checkpoint %s, %lld test images, batch size %lld, BN statistics: %s, TTA level %d\n",
              cfg.checkpoint.c_str(), static_cast<long long>(r.count),
              static_cast<long long>(cfg.batch_size), name_of(cfg.bn_stats).c_str(), cfg.tta);
  std::printf("test loss %.4f  accuracy %.2f%% (%lld/%lld)\n\n", r.loss, 100 * r.accuracy(),
              static_cast<long long>(r.correct), static_cast<long long>(r.count));
  std::printf("%-12s %8s\n", "class", "accuracy");
  bool absent = false;
  for (size_t c = 0; c < names.size(); ++c) {
    const int64_t total = class_total(r, c);
    absent = absent || total == 0;
    if (total == 0)
      std::printf("%-12s %8s\n", names[c].c_str(), "n/a");
    else
      std::printf("%-12s %7.2f%%\n", names[c].c_str(), 100.0 * r.confusion[c][c] / total);
  }
  if (absent) std::printf("(n/a: no test image of that class among those evaluated)\n");
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

Command add_eval(CLI::App& app) {
  auto c = std::make_shared<EvalConfig>();
  auto* e = app.add_subcommand(
      "eval",
      "the test-set loss, accuracy, per-class accuracy and confusion matrix of a checkpoint");
  e->add_option("--checkpoint", c->checkpoint, "the model.safetensors file to evaluate")
      ->type_name("FILE")
      ->required();
  e->add_option("--data", c->data,
                "the CIFAR-10 binary folder (cifar-10-batches-bin); $MINIDL_DATA when not given")
      ->type_name("DIR");
  e->add_option("--batch-size", c->batch_size, "images per batch")
      ->capture_default_str()
      ->check(integer_in(1, 65536));
  e->add_flag("--json", c->json, "print one JSON object (schema in README.md)");
  e->add_flag("--allow-nonfinite", c->allow_nonfinite,
              "evaluate a checkpoint even if a tensor holds NaN or infinity (refused otherwise)");
  e->add_option("--threads", c->threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  e->add_option("--limit-test,--limit", c->limit, "evaluate on the first N test images only")
      ->check(integer_in(1, 10000));
  add_enum_option(e, "--bn-stats", c->bn_stats, "BN's statistics at test time");
  e->add_option("--limit-train,--recalibrate-limit", c->recalibrate_limit,
                "--bn-stats population: recalibrate on the first N training images only")
      ->check(integer_in(1, 50000));
  e->add_option("--tta", c->tta,
                "test-time augmentation: 0 none, 1 the mean logits of the image and its mirror, "
                "2 also one-pixel translations (6 views, airbench94's)")
      ->capture_default_str()
      ->check(integer_in(0, 2));
  return {e, [c] { run_eval(*c); }};
}

}  // namespace minidl::app
