// minidl bench — times steps of a model at a batch size on random data and reports images/second
// and the process's peak resident memory. --mode train: training steps (forward, loss,
// zero_grad, backward, SGD step); --mode eval: inference-mode forward passes under no-grad.
// --profile adds the per-op profiler table of the timed steps; with --roofline FILE (or
// $MINIDL_ROOFLINE), each op's fraction of the machine's ceilings (scripts/roofline.sh).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "apps/cli.hpp"
#include "core/autograd.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/profiler.hpp"
#include "layers/models/registry.hpp"
#include "optim/freeze.hpp"
#include "optim/sgd.hpp"

namespace minidl::app {

const EnumTable<BenchMode>& enum_table(BenchMode) {
  static const EnumTable<BenchMode> t = {
      {BenchMode::kTrain, "train", "forward, loss, backward, SGD step"},
      {BenchMode::kEval, "eval", "inference-mode forward under no-grad (no loss, no backward)"}};
  return t;
}

static void validate(const BenchConfig& cfg) {
  auto bad = [](const std::string& flag, const std::string& what) {
    throw std::invalid_argument(flag + ": " + what);
  };
  if (cfg.mode == BenchMode::kTrain && cfg.batch_size < 2)
    bad("--batch-size", "must be >= 2 with --mode train (BatchNorm training), got " +
                            std::to_string(cfg.batch_size));
  if (cfg.batch_size < 1)
    bad("--batch-size", "must be >= 1, got " + std::to_string(cfg.batch_size));
  if (cfg.steps < 1) bad("--steps", "must be >= 1, got " + std::to_string(cfg.steps));
  if (cfg.warmup < 0) bad("--warmup", "must be >= 0, got " + std::to_string(cfg.warmup));
}

void run_bench(const BenchConfig& cfg) {
  validate(cfg);
  const bool train = cfg.mode == BenchMode::kTrain;
  // The roofline file is read first, so that a bad one fails before the timed steps.
  std::string roofline = cfg.roofline;
  if (roofline.empty() && std::getenv("MINIDL_ROOFLINE")) roofline = std::getenv("MINIDL_ROOFLINE");
  std::unique_ptr<profiler::Ceilings> ceilings;
  if (cfg.profile && !roofline.empty()) {
    ceilings = std::make_unique<profiler::Ceilings>(profiler::read_ceilings(roofline, cfg.threads));
  }
  set_num_threads(cfg.threads);
  train::check_batch_memory(cfg.model, ModelOptions{}, cfg.batch_size, train);
  auto model = create_model(cfg.model, ModelOptions{});
  const auto masks = optim::apply_train_only(*model, cfg.train_only, 0);
  std::unique_ptr<optim::SGD> opt;  // train mode only: eval's peak RSS holds no momentum buffers
  if (train) {
    model->train();
    opt = std::make_unique<optim::SGD>(model->parameters(),
                                       optim::SGDOptions{0.01f, 0.9f, 5e-4f, true});
    for (const auto& m : masks) opt->set_update_mask(m.param, m.mask);
  } else {
    model->eval();
  }
  Generator gen(1);
  Tensor x({cfg.batch_size, 3, 32, 32});
  for (float& v : x.mutable_vec()) v = gen.normal();
  std::vector<int32_t> y(cfg.batch_size);
  for (auto& l : y) l = static_cast<int32_t>(gen.randint(10));

  ProfileWindow profile_window(cfg.profile);
  double fwd = 0, bwd = 0;
  std::vector<double> step_seconds;  // each timed step, for the fastest one
  for (int64_t i = 0; i < cfg.warmup + cfg.steps; ++i) {
    if (i == cfg.warmup && cfg.profile) profiler::reset();  // the timed steps only
    const auto t0 = std::chrono::steady_clock::now();
    auto t1 = t0, t2 = t0;
    if (train) {
      Tensor loss = ops::cross_entropy((*model)(x), y);
      t1 = std::chrono::steady_clock::now();
      {
        profiler::Scope prof("optimizer.zero_grad");
        opt->zero_grad();
      }
      loss.backward();
      {
        profiler::Scope prof("optimizer.step");
        opt->step();
      }
      t2 = std::chrono::steady_clock::now();
    } else {
      NoGradGuard no_grad;
      Tensor logits = (*model)(x);
      t1 = t2 = std::chrono::steady_clock::now();
    }
    if (i >= cfg.warmup) {
      fwd += std::chrono::duration<double>(t1 - t0).count();
      bwd += std::chrono::duration<double>(t2 - t1).count();
      step_seconds.push_back(std::chrono::duration<double>(t2 - t0).count());
    }
  }
  profile_window.stop();
  const double step = (fwd + bwd) / cfg.steps;
  // The fastest step: on a shared machine, noise only ever adds time.
  const double best = *std::min_element(step_seconds.begin(), step_seconds.end());
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mib = ru.ru_maxrss / 1024.0;
  if (cfg.json) {
    nlohmann::json j{{"framework", "minidl"},
                     {"model", cfg.model},
                     {"mode", name_of(cfg.mode)},
                     {"train_only", name_of(cfg.train_only)},
                     {"batch_size", cfg.batch_size},
                     {"threads", cfg.threads},
                     {"steps", cfg.steps},
                     {"images_per_second", cfg.batch_size / step},
                     {"seconds_per_step", step},
                     {"best_images_per_second", cfg.batch_size / best},
                     {"forward_seconds", fwd / cfg.steps},
                     {"backward_seconds", bwd / cfg.steps},
                     {"peak_rss_mib", rss_mib}};
    std::printf("%s\n", j.dump().c_str());
  } else if (train) {
    std::printf(
        "%s --mode train (--train-only %s) batch %lld, %d threads: %.1f images/s (%.3f "
        "s/step: forward %.3f, backward+step %.3f), peak RSS %.0f MiB\n",
        cfg.model.c_str(), name_of(cfg.train_only).c_str(), static_cast<long long>(cfg.batch_size),
        cfg.threads, cfg.batch_size / step, step, fwd / cfg.steps, bwd / cfg.steps, rss_mib);
  } else {
    std::printf(
        "%s --mode eval (inference-mode forward, no grad) batch %lld, %d threads: %.1f "
        "images/s (%.3f s/step), peak RSS %.0f MiB\n",
        cfg.model.c_str(), static_cast<long long>(cfg.batch_size), cfg.threads,
        cfg.batch_size / step, step, rss_mib);
  }
  if (cfg.profile) {
    // With --json the table goes to stderr, so stdout stays one JSON object.
    FILE* out = cfg.json ? stderr : stdout;
    std::fflush(stdout);
    std::fprintf(out, "per-op profile of the %lld timed steps (--mode %s, %.3f s):\n%s",
                 static_cast<long long>(cfg.steps), name_of(cfg.mode).c_str(), fwd + bwd,
                 profiler::table(fwd + bwd, cfg.steps, ceilings.get()).c_str());
    std::fflush(out);
  }
}

Command add_bench(CLI::App& app) {
  auto c = std::make_shared<BenchConfig>();
  auto* b = app.add_subcommand(
      "bench",
      "images/s and peak RSS of training steps or inference forward passes, on random data");
  b->add_option("--model", c->model, "the model (as train --model)")
      ->type_name("NAME")
      ->capture_default_str();
  b->add_option("--batch-size", c->batch_size, "images per batch (>= 2 in train mode)")
      ->capture_default_str()
      ->check(integer_in(1, 65536));
  b->add_option("--steps", c->steps, "timed steps")
      ->capture_default_str()
      ->check(integer_in(1, 1000000));
  b->add_option("--warmup", c->warmup, "untimed steps before the timed ones")
      ->capture_default_str()
      ->check(integer_in(0, 1000000));
  b->add_option("--threads", c->threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  b->add_flag("--json", c->json, "print one JSON object (docs/speed.md)");
  add_enum_option(b, "--train-only", c->train_only, "which parameters learn (as in train)");
  add_enum_option(b, "--mode", c->mode, "what a step is");
  b->add_flag("--profile", c->profile,
              "print a per-op time table (calls, ms, % and GFLOP/s per op and pass) of the timed "
              "steps (to stderr with --json)");
  b->add_option("--roofline", c->roofline,
                "with --profile: scripts/roofline.sh's JSON file, for each op's fraction of this "
                "machine's SGEMM peak and memory bandwidth; $MINIDL_ROOFLINE when not given")
      ->type_name("FILE");
  return {b, [c] { run_bench(*c); }};
}

}  // namespace minidl::app
