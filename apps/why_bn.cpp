#include "apps/why_bn.hpp"

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "apps/engine.hpp"
#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "layers/activation_noise.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/vgg.hpp"
#include "layers/simple.hpp"
#include "optim/sgd.hpp"

namespace minidl::app {

namespace {

/// While alive, every ActivationNoise of the model reuses the step's noise (hold = true), so a
/// probe sees the network the step saw.
class HoldNoise {
 public:
  explicit HoldNoise(Module& model) : layers_(model.modules_of<ActivationNoise>()) {
    for (ActivationNoise* n : layers_) n->hold = true;
  }
  ~HoldNoise() {
    for (ActivationNoise* n : layers_) n->hold = false;
  }
  HoldNoise(const HoldNoise&) = delete;
  HoldNoise& operator=(const HoldNoise&) = delete;

 private:
  std::vector<ActivationNoise*> layers_;
};

/// The values of the input of features[index] (a ReLU) for `x`, running features[0..index)
/// unfused under no-grad. BN updates its running buffers on the way: the caller restores them.
std::vector<float> pre_activation(VGG& vgg, const Tensor& x, int64_t index) {
  NoGradGuard no_grad;
  Tensor h = x;
  const auto& layers = vgg.features->children();
  for (int64_t i = 0; i < index; ++i) h = (*layers[static_cast<size_t>(i)].second)(h);
  return std::vector<float>(h.data(), h.data() + h.numel());
}

}  // namespace

std::vector<std::string> layer_weight_names(Module& model) {
  std::vector<std::string> names;
  for (auto& [name, m] : model.named_modules()) {
    if (dynamic_cast<Conv2d*>(m) || dynamic_cast<Linear*>(m)) names.push_back(name + ".weight");
  }
  return names;
}

int64_t vgg_relu_index(Module& model, int64_t block) {
  auto* vgg = dynamic_cast<VGG*>(&model);
  if (!vgg) throw std::invalid_argument("--layer: the activation probe needs a VGG model");
  int64_t seen = 0;
  const auto& layers = vgg->features->children();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (dynamic_cast<ReLU*>(layers[i].second.get()) && ++seen == block) {
      return static_cast<int64_t>(i);
    }
  }
  throw std::invalid_argument("--layer must be from 1 to " + std::to_string(seen) +
                              " (a conv block of the VGG), got " + std::to_string(block));
}

ProbedRun train_probed(const ProbedRunConfig& cfg, const data::Dataset& train,
                       const data::Dataset* test) {
  if (!(cfg.lr > 0.0f)) throw std::invalid_argument("--lr must be > 0");
  if (cfg.epochs < 1) throw std::invalid_argument("--epochs must be >= 1");
  const auto t0 = std::chrono::steady_clock::now();
  ProbedRun run;
  ModelOptions mo;
  mo.seed = cfg.seed;
  run.model = create_model(cfg.model, mo);
  Module& model = *run.model;
  VGG* vgg = nullptr;
  if (cfg.activation_index >= 0) {
    vgg = dynamic_cast<VGG*>(&model);
    const auto* layers = vgg ? &vgg->features->children() : nullptr;
    if (!vgg || cfg.activation_index >= static_cast<int64_t>(layers->size()) ||
        !dynamic_cast<ReLU*>((*layers)[static_cast<size_t>(cfg.activation_index)].second.get())) {
      throw std::invalid_argument("activation_index " + std::to_string(cfg.activation_index) +
                                  " is not a ReLU of a VGG's features");
    }
  }
  optim::SGDOptions so;
  so.lr = cfg.lr;
  so.momentum = cfg.momentum;
  so.weight_decay = cfg.weight_decay;
  run.opt = std::make_unique<optim::SGD>(model.parameters(), so);

  data::LoaderOptions lo;
  lo.batch_size = cfg.batch_size;
  lo.shuffle = true;
  lo.augment = cfg.augment;
  lo.drop_last = train.size() > cfg.batch_size;
  lo.seed = cfg.seed;
  data::DataLoader loader(train, lo);
  run.steps_per_epoch = loader.num_batches();
  optim::Schedule sched;
  sched.kind = "constant";
  sched.base_lr = cfg.lr;
  sched.total_steps = cfg.epochs * run.steps_per_epoch;
  sched.validate();

  const std::vector<std::string> weights = layer_weight_names(model);
  std::unique_ptr<ModelSnapshot> before;  // W^t and G of a covariate-shift step
  StepHooks hooks;
  auto probing = [&](int64_t step) { return cfg.probe_every > 0 && step % cfg.probe_every == 0; };
  hooks.after_backward = [&](const data::Batch& batch, int64_t step, float loss) {
    run.labels_seen.insert(run.labels_seen.end(), batch.labels.begin(), batch.labels.end());
    if (!probing(step)) return;
    HoldNoise hold(model);
    auto loss_at = [&] { return ops::cross_entropy(model(batch.images), batch.labels); };
    if (!cfg.etas.empty()) {
      run.landscape.emplace_back(step, probe_landscape(model, loss, loss_at, cfg.etas));
    }
    if (vgg) {
      const ModelSnapshot buffers(model);
      std::vector<float> v = pre_activation(*vgg, batch.images, cfg.activation_index);
      buffers.restore(model);
      run.activations.emplace_back(step, distribution_of(std::move(v)));
    }
    if (cfg.covariate_shift) before = std::make_unique<ModelSnapshot>(model);
  };
  hooks.after_step = [&](const data::Batch& batch, int64_t step) {
    if (!before) return;
    HoldNoise hold(model);
    auto loss_at = [&] { return ops::cross_entropy(model(batch.images), batch.labels); };
    run.shift.emplace_back(step, probe_covariate_shift(model, *before, loss_at, weights));
    before.reset();
  };

  int64_t step = 0;
  for (int64_t epoch = 0; epoch < cfg.epochs; ++epoch) {
    model.train();
    EpochStats s;
    try {
      s = train_epoch(model, loader, *run.opt, sched, step, 0.0f, epoch, {}, hooks);
    } catch (const Diverged& e) {
      run.diverged = e.what();
      break;
    }
    ProbedRun::Epoch row;
    row.epoch = epoch + 1;
    row.train_loss = s.loss;
    row.train_accuracy = s.accuracy;
    row.seconds = s.seconds;
    if (test) {
      const EvalResult r = evaluate(model, *test, 1000);
      row.test_loss = r.loss;
      row.test_accuracy = r.accuracy();
    }
    run.epochs.push_back(row);
    if (!cfg.quiet) {
      std::printf(
          "%s epoch %3lld/%lld  train loss %.4f acc %6.2f%%  test loss %.4f acc %6.2f%%"
          "  %.1fs\n",
          cfg.label.c_str(), static_cast<long long>(epoch + 1), static_cast<long long>(cfg.epochs),
          row.train_loss, 100.0 * row.train_accuracy, row.test_loss, 100.0 * row.test_accuracy,
          row.seconds);
      std::fflush(stdout);
    }
  }
  model.train();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

}  // namespace minidl::app
