// minidl bench — times training steps (forward, backward, SGD step) of a model at a batch size
// on random data; reports images/second and the process's peak resident memory.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "layers/models/registry.hpp"
#include "optim/freeze.hpp"
#include "optim/sgd.hpp"

namespace minidl::app {

void run_bench(const BenchConfig& cfg) {
  if (cfg.batch_size < 2 || cfg.steps < 1 || cfg.warmup < 0) {
    throw std::invalid_argument("bench: need --batch-size >= 2, --steps >= 1, --warmup >= 0");
  }
  set_num_threads(cfg.threads);
  auto model = create_model(cfg.model, ModelOptions{});
  model->train();
  const auto masks = optim::apply_train_only(*model, cfg.train_only, 0);
  optim::SGD opt(model->parameters(), {0.01f, 0.9f, 5e-4f, true});
  for (const auto& m : masks) opt.set_update_mask(m.param, m.mask);
  Generator gen(1);
  Tensor x({cfg.batch_size, 3, 32, 32});
  for (float& v : x.vec()) v = gen.normal();
  std::vector<int32_t> y(cfg.batch_size);
  for (auto& l : y) l = static_cast<int32_t>(gen.randint(10));
  double fwd = 0, bwd = 0;
  for (int64_t i = 0; i < cfg.warmup + cfg.steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    Tensor loss = ops::cross_entropy((*model)(x), y);
    const auto t1 = std::chrono::steady_clock::now();
    opt.zero_grad();
    loss.backward();
    opt.step();
    const auto t2 = std::chrono::steady_clock::now();
    if (i >= cfg.warmup) {
      fwd += std::chrono::duration<double>(t1 - t0).count();
      bwd += std::chrono::duration<double>(t2 - t1).count();
    }
  }
  const double step = (fwd + bwd) / cfg.steps;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mib = ru.ru_maxrss / 1024.0;
  if (cfg.json) {
    nlohmann::json j{{"framework", "minidl"}, {"model", cfg.model}, {"train_only", cfg.train_only},
                     {"batch_size", cfg.batch_size}, {"threads", cfg.threads},
                     {"steps", cfg.steps}, {"images_per_second", cfg.batch_size / step},
                     {"seconds_per_step", step}, {"forward_seconds", fwd / cfg.steps},
                     {"backward_seconds", bwd / cfg.steps}, {"peak_rss_mib", rss_mib}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s (--train-only %s) batch %lld, %d threads: %.1f images/s (%.3f s/step: forward %.3f, backward+"
                "step %.3f), peak RSS %.0f MiB\n",
                cfg.model.c_str(), cfg.train_only.c_str(), static_cast<long long>(cfg.batch_size), cfg.threads,
                cfg.batch_size / step, step, fwd / cfg.steps, bwd / cfg.steps, rss_mib);
  }
}

}  // namespace minidl::app
