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
#include <limits>
#include <type_traits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "apps/engine.hpp"
#include "core/file_io.hpp"
#include "core/kernels.hpp"
#include "core/safetensors.hpp"
#include "layers/models/registry.hpp"
#include "optim/adam.hpp"
#include "optim/freeze.hpp"
#include "optim/sgd.hpp"

namespace minidl::app {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

/// Calls f(key, field) for every TrainConfig field that config.json holds, in file order: the
/// one list that config_to_json and config_from_json share. (nlohmann's
/// NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT would give the same single list, but its
/// errors are the library's own type_error text; read_field names the key and the expected
/// type and checks integer and float ranges.)
template <class Config, class F>
void for_each_field(Config& c, F&& f) {
  f("data", c.data);
  f("model", c.model);
  f("epochs", c.epochs);
  f("batch_size", c.batch_size);
  f("optimizer", c.optimizer);
  f("lr", c.lr);
  f("momentum", c.momentum);
  f("nesterov", c.nesterov);
  f("weight_decay", c.weight_decay);
  f("schedule", c.schedule);
  f("warmup_epochs", c.warmup_epochs);
  f("milestones", c.milestones);
  f("gamma", c.gamma);
  f("label_smoothing", c.label_smoothing);
  f("augment", c.augment);
  f("normalize", c.normalize);
  f("seed", c.seed);
  f("threads", c.threads);
  f("limit_train", c.limit_train);
  f("limit_test", c.limit_test);
  f("out", c.out);
  f("bn_init", c.bn_init);
  f("train_only", c.train_only);
  f("bn_stats", c.bn_stats);
}

}  // namespace

json config_to_json(const TrainConfig& c) {
  json j = json::object();
  for_each_field(c, [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

namespace {

/// Reads key `key` of `j` into `field` if present, checking its JSON type first. Throws
/// std::runtime_error naming the key and the expected type.
template <typename T>
void read_field(const json& j, const char* key, T& field) {
  auto it = j.find(key);
  if (it == j.end()) return;
  const json& v = *it;
  auto bad = [&](const char* expected) {
    std::string got = v.dump();
    if (got.size() > 40) got = got.substr(0, 40) + "...";
    return std::runtime_error(std::string("key \"") + key + "\" must be " + expected + ", got " +
                              got);
  };
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) throw bad("a string");
    field = v.get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) throw bad("true or false");
    field = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) throw bad("an integer");
    if (v.is_number_unsigned()) {  // nlohmann parses every non-negative integer as unsigned
      if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        throw bad("an integer in range");
      }
    } else if (std::is_unsigned_v<T> ||
               v.get<int64_t>() < static_cast<int64_t>(std::numeric_limits<T>::lowest())) {
      throw bad("an integer in range");
    }
    field = v.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) throw bad("a number");
    // Converting a double outside T's range is undefined behaviour: check first.
    if (!(std::fabs(v.get<double>()) <= static_cast<double>(std::numeric_limits<T>::max()))) {
      throw bad("a number within the range of a float");
    }
    field = v.get<T>();
  } else {  // std::vector<double>
    if (!v.is_array()) throw bad("an array of numbers");
    field.clear();
    for (const json& x : v) {
      if (!x.is_number()) throw bad("an array of numbers");
      field.push_back(x.get<double>());
    }
  }
}

}  // namespace

TrainConfig config_from_json(const json& j) {
  if (!j.is_object()) throw std::runtime_error("expected a JSON object of training settings");
  TrainConfig c;
  for_each_field(c, [&](const char* key, auto& field) { read_field(j, key, field); });
  return c;
}

TrainConfig read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("\"" + path + "\" does not exist or cannot be read");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > (1u << 20)) {
    throw std::runtime_error("\"" + path + "\" is " + std::to_string(text.size()) +
                             " bytes; a minidl config.json is under 1 MiB");
  }
  if (json_nesting_depth(text) > 8) {
    throw std::runtime_error("\"" + path +
                             "\" nests arrays or objects more than 8 deep; it is "
                             "not a minidl config.json");
  }
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::runtime_error("\"" + path + "\" is not valid JSON (error at byte " +
                             std::to_string(e.byte) + ")");
  }
  try {
    return config_from_json(j);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("\"" + path + "\": " + e.what());
  }
}

static void validate(const TrainConfig& c) {
  auto bad = [](const std::string& flag, const std::string& what) {
    throw std::invalid_argument(flag + ": " + what);
  };
  if (c.epochs < 1) bad("--epochs", "must be >= 1, got " + std::to_string(c.epochs));
  if (c.batch_size < 2)
    bad("--batch-size", "must be >= 2 for BatchNorm training, got " + std::to_string(c.batch_size));
  if (!is_one_of(c.optimizer, optim::optimizer_names()))
    bad("--optimizer",
        "must be " + choices_text(optim::optimizer_names()) + ", got \"" + c.optimizer + "\"");
  if (!(c.lr > 0) || !std::isfinite(c.lr)) bad("--lr", "must be > 0, got " + std::to_string(c.lr));
  if (c.momentum < 0 || c.momentum >= 1) bad("--momentum", "must be in [0, 1)");
  if (c.weight_decay < 0) bad("--weight-decay", "must be >= 0");
  if (c.label_smoothing < 0 || c.label_smoothing >= 1)
    bad("--label-smoothing", "must be in [0, 1)");
  if (c.threads < 1) bad("--threads", "must be >= 1");
  if (c.limit_train == 0 || c.limit_train < -1) bad("--limit-train", "must be >= 1");
  if (!is_one_of(c.bn_stats, train_bn_stats_modes()))
    bad("--bn-stats",
        "must be " + choices_text(train_bn_stats_modes()) + ", got \"" + c.bn_stats + "\"");
  if (!is_one_of(c.schedule, train_schedule_kinds()))
    bad("--schedule",
        "must be " + choices_text(train_schedule_kinds()) + ", got \"" + c.schedule + "\"");
  if (!is_one_of(c.train_only, optim::train_only_modes()))
    bad("--train-only",
        "must be " + choices_text(optim::train_only_modes()) + ", got \"" + c.train_only + "\"");
  if (!is_one_of(c.bn_init, bn_init_names()))
    bad("--bn-init", "must be " + choices_text(bn_init_names()) + ", got \"" + c.bn_init + "\"");
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

/// RUN_DIR/train_state.safetensors, version 2: everything --resume needs, in one file written
/// atomically after every epoch (the epoch's commit point, before model.safetensors and
/// metrics.csv are rewritten from the same state):
///   model.<name>              every tensor of model.state_dict()
///   optimizer.<param>.<kind>  every optimizer state buffer (shape [0] before its first update)
///   metadata                  format "minidl-train-state", version "2", model, epochs_done,
///                             step, optimizer_steps, metrics (metrics.csv's text so far)
/// Version 1 (before this format) held only "optimizer.<index>" buffers; it is still read,
/// with the model from model.safetensors, whose "epoch" must equal epochs_done.
static const char* kStateFormat = "minidl-train-state";

static void save_train_state(const std::string& path, const Module& model, optim::Optimizer& opt,
                             const std::string& model_name, int64_t epoch, int64_t step,
                             const std::string& metrics) {
  NamedTensors state;
  for (auto& [name, t] : model.state_dict()) state.emplace_back("model." + name, t);
  const NamedTensors params = model.named_parameters();
  for (const auto& b : opt.state_buffers()) {
    state.emplace_back("optimizer." + params.at(b.param).first + "." + b.kind,
                       Tensor({static_cast<int64_t>(b.values->size())}, *b.values));
  }
  save_safetensors(path, state,
                   {{"format", kStateFormat},
                    {"version", "2"},
                    {"model", model_name},
                    {"epochs_done", std::to_string(epoch)},
                    {"step", std::to_string(step)},
                    {"optimizer_steps", std::to_string(opt.step_count())},
                    {"metrics", metrics}});
}

/// RUN_DIR/model.safetensors: the model's state_dict with metadata format "minidl", model,
/// normalization, config (JSON), epoch, test_accuracy and seed; what eval, predict and
/// bn-stats read.
static void save_model_checkpoint(const std::string& path, const Module& model,
                                  const TrainConfig& cfg, int64_t epoch,
                                  const std::string& test_accuracy) {
  save_safetensors(
      path, model.state_dict(),
      {{"format", "minidl"},
       {"model", cfg.model},
       {"normalization", cfg.normalize},
       {"config", config_to_json(cfg).dump(-1, ' ', false, json::error_handler_t::replace)},
       {"epoch", std::to_string(epoch)},
       {"test_accuracy", test_accuracy},
       {"seed", std::to_string(cfg.seed)}});
}

/// What --resume continues from.
struct ResumePoint {
  int64_t epoch = 0;    ///< epochs done
  int64_t step = 0;     ///< optimizer steps done (epoch * batches per epoch)
  std::string metrics;  ///< metrics.csv's text up to `epoch`
};

/// The integer metadata entry `key` of `ck` (read from `path`), which must be in [lo, hi].
static int64_t meta_int(const Checkpoint& ck, const std::string& path, const std::string& key,
                        int64_t lo, int64_t hi) {
  auto it = ck.metadata.find(key);
  auto bad = [&](const std::string& what) {
    return std::runtime_error("--resume: \"" + path + "\": metadata \"" + key + "\" " + what);
  };
  if (it == ck.metadata.end()) throw bad("is missing");
  const std::string& v = it->second;
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
    throw bad("must be a non-negative integer, got \"" + v.substr(0, 40) + "\"");
  const int64_t x = std::stoll(v);
  if (x < lo || x > hi) {
    throw bad("is " + v + ", expected " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return x;
}

/// The first `rows` epoch rows of a metrics.csv text (header kept). Throws if it has fewer.
static std::string first_metrics_rows(const std::string& text, int64_t rows,
                                      const std::string& path) {
  std::istringstream in(text);
  std::string line, out;
  int64_t n = -1;  // the header is row -1
  while (n < rows && std::getline(in, line)) {
    out += line + "\n";
    ++n;
  }
  if (n < rows) {
    throw std::runtime_error("--resume: \"" + path + "\" has " +
                             std::to_string(std::max<int64_t>(n, 0)) +
                             " epoch rows, the saved state is at epoch " + std::to_string(rows));
  }
  return out;
}

/// Loads the state saved by save_train_state into `model` and `opt`, checking every name, shape
/// and size against them. Throws std::runtime_error naming the file and the entry.
static ResumePoint load_train_state(const std::string& run_dir, Module& model,
                                    optim::Optimizer& opt, const TrainConfig& cfg,
                                    int64_t per_epoch) {
  const std::string path = run_dir + "/train_state.safetensors";
  const std::string model_path = run_dir + "/model.safetensors";
  if (!fs::exists(path)) {
    throw std::runtime_error("--resume: \"" + path +
                             "\" does not exist: no epoch of this run "
                             "finished, so there is nothing to continue (start it again without "
                             "--resume)");
  }
  Checkpoint ck = load_safetensors(path);
  auto fail = [&](const std::string& what) {
    return std::runtime_error("--resume: \"" + path + "\" " + what);
  };
  ResumePoint r;
  r.epoch = meta_int(ck, path, "epochs_done", 1, cfg.epochs);
  r.step = meta_int(ck, path, "step", 0, INT64_MAX / 2);
  if (r.step != r.epoch * per_epoch) {
    throw fail("is at step " + std::to_string(r.step) + " after " + std::to_string(r.epoch) +
               " epochs, but this run has " + std::to_string(per_epoch) +
               " batches per epoch "
               "(was --limit-train or --batch-size changed?)");
  }
  const int64_t optimizer_steps = meta_int(ck, path, "optimizer_steps", 0, INT64_MAX / 2);
  const NamedTensors params = model.named_parameters();
  if (params.size() != opt.params().size()) throw std::logic_error("optimizer and model disagree");
  std::map<std::string, Tensor> saved_buffers;
  NamedTensors model_state;
  const bool v2 = ck.metadata.count("version") && ck.metadata.at("version") == "2";
  for (auto& [name, t] : ck.tensors) {
    if (v2 && name.rfind("model.", 0) == 0)
      model_state.emplace_back(name.substr(6), t);
    else if (name.rfind("optimizer.", 0) == 0)
      saved_buffers[name] = t;
    else
      throw fail("has an entry \"" + name + "\" that is neither model.* nor optimizer.*");
  }
  if (v2) {
    auto format = ck.metadata.find("format");
    if (format == ck.metadata.end() || format->second != kStateFormat) {
      throw fail("is not a minidl training state (its metadata has no format \"" +
                 std::string(kStateFormat) + "\")");
    }
    auto it = ck.metadata.find("model");
    if (it == ck.metadata.end() || it->second != cfg.model) {
      throw fail("holds model " + (it == ck.metadata.end() ? std::string("(none)") : it->second) +
                 ", the run's config.json says " + cfg.model);
    }
    try {
      model.load_state_dict(model_state);
    } catch (const std::exception& e) {
      throw fail(std::string("does not fit the model: ") + e.what());
    }
    auto m = ck.metadata.find("metrics");
    if (m == ck.metadata.end()) throw fail("has no metrics entry");
    r.metrics = first_metrics_rows(m->second, r.epoch, path);
  } else {
    // Version 1: the model from model.safetensors, which must be of the same epoch.
    Checkpoint mk = load_safetensors(model_path);
    const int64_t model_epoch = meta_int(mk, model_path, "epoch", 0, INT64_MAX / 2);
    if (model_epoch != r.epoch) {
      throw std::runtime_error(
          "--resume: \"" + model_path + "\" is from epoch " + std::to_string(model_epoch) +
          " but \"" + path + "\" from epoch " + std::to_string(r.epoch) +
          " (the run stopped between the two "
          "writes); resuming would mix epochs, so this run cannot be continued");
    }
    try {
      model.load_state_dict(mk.tensors);
    } catch (const std::exception& e) {
      throw std::runtime_error("--resume: \"" + model_path +
                               "\" does not fit the model: " + e.what());
    }
    std::ifstream in(run_dir + "/metrics.csv");
    std::stringstream ss;
    ss << in.rdbuf();
    r.metrics = first_metrics_rows(ss.str(), r.epoch, run_dir + "/metrics.csv");
  }
  // Every optimizer buffer: the expected name, and 0 values (never updated) or the parameter's.
  const auto buffers = opt.state_buffers();
  if (saved_buffers.size() != buffers.size()) {
    throw fail("holds " + std::to_string(saved_buffers.size()) +
               " optimizer buffers, this run's "
               "--optimizer " +
               cfg.optimizer + " has " + std::to_string(buffers.size()));
  }
  std::vector<std::string> kinds;  // version 1 stored the buffers kind by kind
  for (const auto& b : buffers) {
    if (std::find(kinds.begin(), kinds.end(), b.kind) == kinds.end()) kinds.push_back(b.kind);
  }
  for (const auto& b : buffers) {
    const size_t v1_index =
        static_cast<size_t>(std::find(kinds.begin(), kinds.end(), b.kind) - kinds.begin()) *
            params.size() +
        b.param;
    const std::string name = v2 ? "optimizer." + params[b.param].first + "." + b.kind
                                : "optimizer." + std::to_string(v1_index);
    auto it = saved_buffers.find(name);
    if (it == saved_buffers.end()) {
      throw fail("has no optimizer buffer \"" + name +
                 "\" (was it written with another "
                 "--optimizer or model?)");
    }
    const Tensor& t = it->second;
    const int64_t want = params[b.param].second.numel();
    if (t.dim() != 1 || (t.numel() != 0 && t.numel() != want)) {
      throw fail("has optimizer buffer \"" + name + "\" of shape " + shape_str(t.shape()) +
                 "; parameter \"" + params[b.param].first + "\" needs [" + std::to_string(want) +
                 "] (or [0] before its first update)");
    }
    const Storage& v = t.vec();
    b.values->assign(v.begin(), v.end());
  }
  opt.set_step_count(optimizer_steps);
  return r;
}

TrainResult run_train(const TrainConfig& given) {
  TrainConfig cfg = given;
  int64_t start_epoch = 0, step = 0;
  if (!cfg.resume.empty()) {
    TrainConfig saved;
    try {
      saved = read_config_file(cfg.resume + "/config.json");
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string("--resume: ") + e.what());
    }
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

  ModelOptions mo;
  mo.seed = cfg.seed;
  mo.bn_init = cfg.bn_init;
  std::shared_ptr<Module> model = create_model(cfg.model, mo);  // a bad --model fails first

  data::Dataset train = data::load_cifar10(cfg.data, true, cfg.limit_train);
  data::Dataset test = data::load_cifar10(cfg.data, false, cfg.limit_test);
  // Which parameters learn (requires_grad), before the optimizer sees them.
  const std::vector<optim::UpdateMask> masks =
      apply_train_only_flag(*model, cfg.train_only, cfg.seed);
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
  std::string metrics =
      "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,"
      "images_per_second\n";
  if (!cfg.resume.empty()) {
    const ResumePoint r = load_train_state(cfg.out, *model, *opt, cfg, per_epoch);
    start_epoch = r.epoch;
    step = r.step;
    metrics = r.metrics;
    // model.safetensors and metrics.csv follow the state (a kill between the writes of an
    // epoch can leave them one epoch apart).
    write_text_atomic(metrics_path, metrics);
    Checkpoint current;
    bool model_current = false;
    try {
      current = load_safetensors(model_path);
      model_current = current.metadata.count("epoch") &&
                      current.metadata.at("epoch") == std::to_string(start_epoch);
    } catch (const std::runtime_error&) {
    }
    if (!model_current) {
      const std::string last = metrics.substr(metrics.rfind('\n', metrics.size() - 2) + 1);
      std::vector<std::string> f;
      std::stringstream ss(last);
      for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
      save_model_checkpoint(model_path, *model, cfg, start_epoch, f.size() > 4 ? f[4] : "");
    }
  }
  write_text_atomic(cfg.out + "/config.json",
                    config_to_json(cfg).dump(2, ' ', false, json::error_handler_t::replace) + "\n");

  const bool tty = !cfg.quiet && isatty(STDERR_FILENO);
  if (!cfg.quiet) {
    std::printf(
        "minidl train: %s, %lld parameters (%lld trainable: --train-only %s, "
        "--bn-stats %s), %lld train / %lld test images, %lld epochs "
        "of %lld batches, %s lr %g (%s), %d threads -> %s\n",
        cfg.model.c_str(), static_cast<long long>(count_parameters(*model)),
        static_cast<long long>(trainable), cfg.train_only.c_str(), cfg.bn_stats.c_str(),
        static_cast<long long>(train.size()), static_cast<long long>(test.size()),
        static_cast<long long>(cfg.epochs), static_cast<long long>(per_epoch),
        cfg.optimizer.c_str(), cfg.lr, cfg.schedule.c_str(), cfg.threads, cfg.out.c_str());
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
      const double el =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int width = 30, done = static_cast<int>(width * i / n);
      std::fprintf(stderr, "\r  [%s%s] %lld/%lld loss %.4f ETA %s   ",
                   std::string(done, '=').c_str(), std::string(width - done, ' ').c_str(),
                   static_cast<long long>(i), static_cast<long long>(n), loss,
                   format_duration(el / i * (n - i)).c_str());
      if (i == n) std::fprintf(stderr, "\r%s\r", std::string(80, ' ').c_str());
    };
    const float lr_now = sched.lr(step);
    // --profile: the first epoch of this invocation, training loop only (not the evaluation).
    const bool profile_epoch = cfg.profile && epoch == start_epoch;
    ProfileWindow profile_window(profile_epoch);
    // Divergence stops the run before anything of this epoch is saved; the message says what
    // is kept.
    auto diverged = [&](const std::string& what) {
      return std::runtime_error("training diverged: " + what + " (try a smaller --lr). " +
                                (epoch > 0 ? "Kept: the checkpoint of epoch " +
                                                 std::to_string(epoch) + " in \"" + model_path +
                                                 "\" (continue it with --resume " + cfg.out + ")"
                                           : std::string("No checkpoint was written (no epoch of "
                                                         "this run finished without diverging)")));
    };
    EpochStats tr;
    try {
      tr = train_epoch(*model, loader, *opt, sched, step, cfg.label_smoothing, epoch, progress);
    } catch (const Diverged& e) {
      throw diverged(e.what());
    }
    profile_window.stop();
    EvalResult te = evaluate(*model, test, 1000, BnStats::kRunning, lo.norm);
    if (!std::isfinite(te.loss)) {
      throw diverged("the test loss is " + nonfinite_name(te.loss) + " after epoch " +
                     std::to_string(epoch + 1));
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ips = tr.images / tr.seconds;
    if (!cfg.quiet) {
      std::printf(
          "epoch %3lld/%lld  train loss %.4f acc %6.2f%%  test loss %.4f acc %6.2f%%  "
          "lr %.4g  %.1fs  %.0f img/s\n",
          static_cast<long long>(epoch + 1), static_cast<long long>(cfg.epochs), tr.loss,
          100 * tr.accuracy, te.loss, 100 * te.accuracy(), lr_now, secs, ips);
      std::fflush(stdout);
    }
    if (profile_epoch) {
      std::printf(
          "per-op profile of epoch %lld (%lld batches, training loop %.3f s, evaluation "
          "excluded):\n%s",
          static_cast<long long>(epoch + 1), static_cast<long long>(per_epoch), tr.seconds,
          profiler::table(tr.seconds, per_epoch).c_str());
      std::fflush(stdout);
    }
    char row[256];
    std::snprintf(row, sizeof row, "%lld,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f,%.1f\n",
                  static_cast<long long>(epoch + 1), tr.loss, tr.accuracy, te.loss, te.accuracy(),
                  lr_now, secs, ips);
    metrics += row;
    // The epoch's commit point is train_state.safetensors; the other two files follow it.
    save_train_state(state_path, *model, *opt, cfg.model, epoch + 1, step, metrics);
    save_model_checkpoint(model_path, *model, cfg, epoch + 1, std::to_string(te.accuracy()));
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
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  if (!cfg.quiet) {
    std::printf("done: test accuracy %.2f%% after %lld epochs in %s; checkpoint %s\n",
                100 * result.final_test_accuracy, static_cast<long long>(end_epoch),
                format_duration(result.seconds).c_str(), model_path.c_str());
  }
  return result;
}

}  // namespace minidl::app
