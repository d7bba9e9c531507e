#include "experiments/probed_run.hpp"

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "core/autograd.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "layers/activation_noise.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/vgg.hpp"
#include "layers/simple.hpp"
#include "train/trainer.hpp"

namespace minidl::experiments {

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
  if (!vgg) throw std::invalid_argument("layer: the activation probe needs a VGG model");
  int64_t seen = 0;
  const auto& layers = vgg->features->children();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (dynamic_cast<ReLU*>(layers[i].second.get()) && ++seen == block) {
      return static_cast<int64_t>(i);
    }
  }
  throw std::invalid_argument("layer must be from 1 to " + std::to_string(seen) +
                              " (a conv block of the VGG), got " + std::to_string(block));
}

ProbedRun train_probed(const ProbedRunConfig& cfg, const data::Dataset& train,
                       const data::Dataset* test,
                       const std::function<void(const ProbedRun::Epoch&)>& on_epoch) {
  if (!(cfg.lr > 0.0f)) throw std::invalid_argument("lr must be > 0");
  if (cfg.epochs < 1) throw std::invalid_argument("epochs must be >= 1");
  const auto t0 = std::chrono::steady_clock::now();
  // Plain SGD at a constant lr, every parameter trained, no label smoothing, no run directory.
  train::TrainOptions o;
  o.model = cfg.model;
  o.epochs = static_cast<double>(cfg.epochs);
  o.batch_size = cfg.batch_size;
  o.lr = cfg.lr;
  o.momentum = cfg.momentum;
  o.nesterov = false;
  o.weight_decay = cfg.weight_decay;
  o.schedule = optim::ScheduleKind::kConstant;
  o.warmup_epochs = 0;
  o.label_smoothing = 0.0f;
  o.augment = cfg.augment;
  o.seed = cfg.seed;
  o.threads = get_num_threads();
  o.out.clear();

  ProbedRun run;
  Module* model_ptr = nullptr;  // set by on_fit_start
  VGG* vgg = nullptr;
  std::vector<std::string> weights;
  std::unique_ptr<ModelSnapshot> before;  // W^t and G of a covariate-shift step
  train::Callbacks cb;
  cb.on_fit_start = [&](const train::FitStart& f) {
    model_ptr = const_cast<Module*>(&f.model);
    run.steps_per_epoch = f.batches_per_epoch;
    weights = layer_weight_names(*model_ptr);
    if (cfg.activation_index >= 0) {
      vgg = dynamic_cast<VGG*>(model_ptr);
      const auto* layers = vgg ? &vgg->features->children() : nullptr;
      if (!vgg || cfg.activation_index >= static_cast<int64_t>(layers->size()) ||
          !dynamic_cast<ReLU*>((*layers)[static_cast<size_t>(cfg.activation_index)].second.get())) {
        throw std::invalid_argument("activation_index " + std::to_string(cfg.activation_index) +
                                    " is not a ReLU of a VGG's features");
      }
    }
  };
  auto probing = [&](int64_t step) { return cfg.probe_every > 0 && step % cfg.probe_every == 0; };
  cb.step.after_backward = [&](const data::Batch& batch, int64_t step, float loss) {
    Module& model = *model_ptr;
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
  cb.step.after_step = [&](const data::Batch& batch, int64_t step) {
    if (!before) return;
    Module& model = *model_ptr;
    HoldNoise hold(model);
    auto loss_at = [&] { return ops::cross_entropy(model(batch.images), batch.labels); };
    run.shift.emplace_back(step, probe_covariate_shift(model, *before, loss_at, weights));
    before.reset();
  };
  cb.on_epoch_end = [&](const train::EpochEnd& e) {
    ProbedRun::Epoch row;
    row.epoch = e.row.epoch;
    row.train_loss = e.train.loss;
    row.train_accuracy = e.train.accuracy;
    row.seconds = e.train.seconds;
    if (e.test) {
      row.test_loss = e.test->loss;
      row.test_accuracy = e.test->accuracy();
    }
    run.epochs.push_back(row);
    if (on_epoch) on_epoch(row);
  };
  train::Trainer trainer(o, cb);
  trainer.set_datasets(&train, test);
  try {
    trainer.fit();
  } catch (const train::FitDiverged& e) {
    run.diverged = e.reason;
  }
  run.model = trainer.model();
  run.opt = trainer.optimizer();
  run.model->train();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

}  // namespace minidl::experiments
