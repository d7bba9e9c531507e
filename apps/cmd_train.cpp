// minidl train — trains a model on CIFAR-10 and writes RUN_DIR/{metrics.csv, config.json,
// model.safetensors, train_state.safetensors} after every epoch (each written to a temporary
// file, then renamed).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "apps/engine.hpp"
#include "core/kernels.hpp"
#include "core/safetensors.hpp"
#include "layers/models/registry.hpp"
#include "optim/adam.hpp"
#include "optim/freeze.hpp"
#include "optim/sgd.hpp"

namespace minidl::app {

namespace fs = std::filesystem;
using json = nlohmann::json;

json config_to_json(const TrainConfig& c) {
  return json{{"data", c.data},
              {"model", c.model},
              {"epochs", c.epochs},
              {"batch_size", c.batch_size},
              {"optimizer", c.optimizer},
              {"lr", c.lr},
              {"momentum", c.momentum},
              {"nesterov", c.nesterov},
              {"weight_decay", c.weight_decay},
              {"schedule", c.schedule},
              {"warmup_epochs", c.warmup_epochs},
              {"milestones", c.milestones},
              {"gamma", c.gamma},
              {"label_smoothing", c.label_smoothing},
              {"augment", c.augment},
              {"normalize", c.normalize},
              {"seed", c.seed},
              {"threads", c.threads},
              {"limit_train", c.limit_train},
              {"limit_test", c.limit_test},
              {"out", c.out},
              {"bn_init", c.bn_init},
              {"train_only", c.train_only},
              {"bn_stats", c.bn_stats}};
}

TrainConfig config_from_json(const json& j) {
  TrainConfig c;
  c.data = j.value("data", c.data);
  c.model = j.value("model", c.model);
  c.epochs = j.value("epochs", c.epochs);
  c.batch_size = j.value("batch_size", c.batch_size);
  c.optimizer = j.value("optimizer", c.optimizer);
  c.lr = j.value("lr", c.lr);
  c.momentum = j.value("momentum", c.momentum);
  c.nesterov = j.value("nesterov", c.nesterov);
  c.weight_decay = j.value("weight_decay", c.weight_decay);
  c.schedule = j.value("schedule", c.schedule);
  c.warmup_epochs = j.value("warmup_epochs", c.warmup_epochs);
  c.milestones = j.value("milestones", c.milestones);
  c.gamma = j.value("gamma", c.gamma);
  c.label_smoothing = j.value("label_smoothing", c.label_smoothing);
  c.augment = j.value("augment", c.augment);
  c.normalize = j.value("normalize", c.normalize);
  c.seed = j.value("seed", c.seed);
  c.threads = j.value("threads", c.threads);
  c.limit_train = j.value("limit_train", c.limit_train);
  c.limit_test = j.value("limit_test", c.limit_test);
  c.out = j.value("out", c.out);
  c.bn_init = j.value("bn_init", c.bn_init);
  c.train_only = j.value("train_only", c.train_only);
  c.bn_stats = j.value("bn_stats", c.bn_stats);
  return c;
}

static void validate(const TrainConfig& c) {
  auto bad = [](const std::string& flag, const std::string& what) {
    throw std::invalid_argument(flag + ": " + what);
  };
  if (c.epochs < 1) bad("--epochs", "must be >= 1, got " + std::to_string(c.epochs));
  if (c.batch_size < 2) bad("--batch-size", "must be >= 2 for BatchNorm training, got " +
                                                std::to_string(c.batch_size));
  if (c.optimizer != "sgd" && c.optimizer != "adam" && c.optimizer != "adamw")
    bad("--optimizer", "must be sgd, adam or adamw, got \"" + c.optimizer + "\"");
  if (!(c.lr > 0) || !std::isfinite(c.lr)) bad("--lr", "must be > 0, got " + std::to_string(c.lr));
  if (c.momentum < 0 || c.momentum >= 1) bad("--momentum", "must be in [0, 1)");
  if (c.weight_decay < 0) bad("--weight-decay", "must be >= 0");
  if (c.label_smoothing < 0 || c.label_smoothing >= 1) bad("--label-smoothing", "must be in [0, 1)");
  if (c.threads < 1) bad("--threads", "must be >= 1");
  if (c.limit_train == 0 || c.limit_train < -1) bad("--limit-train", "must be >= 1");
  if (c.bn_stats != "batch" && c.bn_stats != "running")
    bad("--bn-stats", "must be batch or running, got \"" + c.bn_stats + "\"");
  data::normalization_named(c.normalize, "--normalize");
}

static std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, Module& model) {
  if (c.optimizer == "sgd") {
    return std::make_unique<optim::SGD>(
        model.parameters(),
        optim::SGDOptions{c.lr, c.momentum, c.weight_decay, c.nesterov && c.momentum > 0});
  }
  optim::AdamOptions o;
  o.lr = c.lr;
  o.weight_decay = c.weight_decay;
  o.decoupled_weight_decay = c.optimizer == "adamw";
  return std::make_unique<optim::Adam>(model.parameters(), o);
}

static void save_train_state(const std::string& path, optim::Optimizer& opt, int64_t epoch,
                             int64_t step) {
  NamedTensors state;
  auto buffers = opt.state_buffers();
  for (size_t i = 0; i < buffers.size(); ++i) {
    state.emplace_back("optimizer." + std::to_string(i),
                       Tensor({static_cast<int64_t>(buffers[i]->size())}, *buffers[i]));
  }
  save_safetensors(path, state,
                   {{"epochs_done", std::to_string(epoch)},
                    {"step", std::to_string(step)},
                    {"optimizer_steps", std::to_string(opt.step_count())}});
}

static void load_train_state(const std::string& path, optim::Optimizer& opt, int64_t& epoch,
                             int64_t& step) {
  Checkpoint ck = load_safetensors(path);
  auto buffers = opt.state_buffers();
  if (ck.tensors.size() != buffers.size()) {
    throw std::runtime_error("\"" + path + "\" holds " + std::to_string(ck.tensors.size()) +
                             " optimizer buffers, this optimizer has " +
                             std::to_string(buffers.size()));
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    const Storage& v = ck.tensors[i].second.vec();
    buffers[i]->assign(v.begin(), v.end());
  }
  epoch = std::stoll(ck.metadata.at("epochs_done"));
  step = std::stoll(ck.metadata.at("step"));
  opt.set_step_count(std::stoll(ck.metadata.at("optimizer_steps")));
}

static std::string format_duration(double s) {
  char buf[32];
  const int t = static_cast<int>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, (t / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  return buf;
}

TrainResult run_train(const TrainConfig& given) {
  TrainConfig cfg = given;
  int64_t start_epoch = 0, step = 0;
  if (!cfg.resume.empty()) {
    const std::string cfg_path = cfg.resume + "/config.json";
    std::ifstream in(cfg_path);
    if (!in) throw std::runtime_error("--resume: cannot read \"" + cfg_path + "\"");
    TrainConfig saved = config_from_json(json::parse(in));
    saved.epochs = given.epochs_set_by_user ? given.epochs : saved.epochs;
    saved.threads = given.threads;
    saved.quiet = given.quiet;
    saved.stop_after = given.stop_after;
    saved.profile = given.profile;
    if (!given.data.empty()) saved.data = given.data;
    saved.out = cfg.resume;
    saved.resume = cfg.resume;
    cfg = saved;
  }
  cfg.data = resolve_data_dir(cfg.data);
  validate(cfg);
  set_num_threads(cfg.threads);

  data::Dataset train = data::load_cifar10(cfg.data, true, cfg.limit_train);
  data::Dataset test = data::load_cifar10(cfg.data, false, cfg.limit_test);

  ModelOptions mo;
  mo.seed = cfg.seed;
  mo.bn_init = cfg.bn_init;
  std::shared_ptr<Module> model = create_model(cfg.model, mo);
  // Which parameters learn (requires_grad), before the optimizer sees them.
  const std::vector<optim::UpdateMask> masks = optim::apply_train_only(*model, cfg.train_only, cfg.seed);
  std::unique_ptr<optim::Optimizer> opt = make_optimizer(cfg, *model);
  for (const auto& m : masks) opt->set_update_mask(m.param, m.mask);
  const int64_t trainable = optim::count_trainable(*model, masks);

  data::LoaderOptions lo;
  lo.batch_size = cfg.batch_size;
  lo.shuffle = true;
  lo.augment = cfg.augment;
  lo.drop_last = train.size() > cfg.batch_size;  // a BN batch of one would be an error
  lo.seed = cfg.seed;
  lo.norm = data::normalization_named(cfg.normalize);
  data::DataLoader loader(train, lo);
  const int64_t per_epoch = loader.num_batches();

  optim::Schedule sched;
  sched.kind = cfg.schedule;
  sched.base_lr = cfg.lr;
  sched.total_steps = cfg.epochs * per_epoch;
  const double warmup = cfg.warmup_epochs < 0 ? 0.15 * cfg.epochs : cfg.warmup_epochs;
  sched.warmup_steps = static_cast<int64_t>(std::llround(warmup * per_epoch));
  for (double m : cfg.milestones) sched.milestones.push_back(std::llround(m * per_epoch));
  sched.gamma = cfg.gamma;
  sched.validate();

  fs::create_directories(cfg.out);
  const std::string model_path = cfg.out + "/model.safetensors";
  const std::string state_path = cfg.out + "/train_state.safetensors";
  const std::string metrics_path = cfg.out + "/metrics.csv";
  std::string metrics = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,"
                        "images_per_second\n";
  if (!cfg.resume.empty()) {
    model->load_state_dict(load_safetensors(model_path).tensors);
    load_train_state(state_path, *opt, start_epoch, step);
    std::ifstream in(metrics_path);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!ss.str().empty()) metrics = ss.str();
  }
  write_text_atomic(cfg.out + "/config.json", config_to_json(cfg).dump(2) + "\n");

  const bool tty = !cfg.quiet && isatty(STDERR_FILENO);
  if (!cfg.quiet) {
    std::printf("minidl train: %s, %lld parameters (%lld trainable: --train-only %s, "
                "--bn-stats %s), %lld train / %lld test images, %lld epochs "
                "of %lld batches, %s lr %g (%s), %d threads -> %s\n",
                cfg.model.c_str(), static_cast<long long>(count_parameters(*model)),
                static_cast<long long>(trainable), cfg.train_only.c_str(), cfg.bn_stats.c_str(),
                static_cast<long long>(train.size()), static_cast<long long>(test.size()),
                static_cast<long long>(cfg.epochs), static_cast<long long>(per_epoch),
                cfg.optimizer.c_str(), cfg.lr, cfg.schedule.c_str(), cfg.threads,
                cfg.out.c_str());
    std::fflush(stdout);
  }
  TrainResult result;
  int64_t images_total = 0;
  double train_seconds = 0.0;
  const auto run_start = std::chrono::steady_clock::now();
  const int64_t end_epoch =
      cfg.stop_after > 0 ? std::min(cfg.epochs, start_epoch + cfg.stop_after) : cfg.epochs;
  for (int64_t epoch = start_epoch; epoch < end_epoch; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    model->train();
    if (cfg.bn_stats == "running") set_batch_norm_training(*model, false);
    auto progress = [&](int64_t i, int64_t n, double loss) {
      if (!tty) return;
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int width = 30, done = static_cast<int>(width * i / n);
      std::fprintf(stderr, "\r  [%s%s] %lld/%lld loss %.4f ETA %s   ", std::string(done, '=').c_str(),
                   std::string(width - done, ' ').c_str(), static_cast<long long>(i),
                   static_cast<long long>(n), loss, format_duration(el / i * (n - i)).c_str());
      if (i == n) std::fprintf(stderr, "\r%s\r", std::string(80, ' ').c_str());
    };
    const float lr_now = sched.lr(step);
    // --profile: the first epoch of this invocation, training loop only (not the evaluation).
    const bool profile_epoch = cfg.profile && epoch == start_epoch;
    ProfileWindow profile_window(profile_epoch);
    EpochStats tr = train_epoch(*model, loader, *opt, sched, step, cfg.label_smoothing, epoch, progress);
    profile_window.stop();
    EvalResult te = evaluate(*model, test, 1000, BnStats::kRunning, lo.norm);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ips = tr.images / tr.seconds;
    if (!cfg.quiet) {
      std::printf("epoch %3lld/%lld  train loss %.4f acc %6.2f%%  test loss %.4f acc %6.2f%%  "
                  "lr %.4g  %.1fs  %.0f img/s\n",
                  static_cast<long long>(epoch + 1), static_cast<long long>(cfg.epochs), tr.loss,
                  100 * tr.accuracy, te.loss, 100 * te.accuracy(), lr_now, secs, ips);
      std::fflush(stdout);
    }
    if (profile_epoch) {
      std::printf("per-op profile of epoch %lld (%lld batches, training loop %.3f s, evaluation "
                  "excluded):\n%s",
                  static_cast<long long>(epoch + 1), static_cast<long long>(per_epoch),
                  tr.seconds, profiler::table(tr.seconds, per_epoch).c_str());
      std::fflush(stdout);
    }
    char row[256];
    std::snprintf(row, sizeof row, "%lld,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f,%.1f\n",
                  static_cast<long long>(epoch + 1), tr.loss, tr.accuracy, te.loss, te.accuracy(),
                  lr_now, secs, ips);
    metrics += row;
    std::map<std::string, std::string> meta = {{"format", "minidl"},
                                               {"model", cfg.model},
                                               {"normalization", cfg.normalize},
                                               {"config", config_to_json(cfg).dump()},
                                               {"epoch", std::to_string(epoch + 1)},
                                               {"test_accuracy", std::to_string(te.accuracy())},
                                               {"seed", std::to_string(cfg.seed)}};
    save_safetensors(model_path, model->state_dict(), meta);
    save_train_state(state_path, *opt, epoch + 1, step);
    write_text_atomic(metrics_path, metrics);
    result.final_test_accuracy = te.accuracy();
    result.final_test_loss = te.loss;
    result.final_train_accuracy = tr.accuracy;
    result.epochs_run += 1;
    images_total += tr.images;
    train_seconds += tr.seconds;
  }
  result.trainable_parameters = trainable;
  result.images_per_second = train_seconds > 0 ? images_total / train_seconds : 0.0;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  if (!cfg.quiet) {
    std::printf("done: test accuracy %.2f%% after %lld epochs in %s; checkpoint %s\n",
                100 * result.final_test_accuracy, static_cast<long long>(end_epoch),
                format_duration(result.seconds).c_str(), model_path.c_str());
  }
  return result;
}

}  // namespace minidl::app
