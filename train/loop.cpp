#include "train/loop.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "core/profiler.hpp"
#include "data/views.hpp"
#include "layers/batch_norm.hpp"
#include "layers/recalibrate.hpp"

namespace minidl::train {

namespace {
/// Index of the largest of logits[i, 0..K).
int64_t argmax_row(const float* z, int64_t i, int64_t K) {
  int64_t pred = 0;
  for (int64_t k = 1; k < K; ++k) pred = z[i * K + k] > z[i * K + pred] ? k : pred;
  return pred;
}
}  // namespace

int recalibrate_on(Module& model, const data::Dataset& ds, int64_t batch_size,
                   const data::Normalization& norm) {
  if (batch_size < 1)
    throw std::invalid_argument("batch_size must be >= 1, got " + std::to_string(batch_size));
  return recalibrate_batch_norm(model, [&](const std::function<void(const Tensor&)>& visit) {
    for (int64_t b = 0; b < ds.size(); b += batch_size)
      visit(data::to_tensor(ds, b, std::min(batch_size, ds.size() - b), norm));
  });
}

Tensor tta_logits(Module& model, const Tensor& x, int level) {
  if (level < 0 || level > kMaxTtaLevel) {
    throw std::invalid_argument("tta must be 0, 1 or 2, got " + std::to_string(level));
  }
  if (level == 0) return model(x);
  // (a + b) / 2 elementwise, in place into a.
  auto mean_into = [](Tensor& a, const Tensor& b) {
    float* d = a.mutable_data();
    const float* e = b.data();
    for (int64_t i = 0, n = a.numel(); i < n; ++i) d[i] = 0.5f * (d[i] + e[i]);
  };
  auto mirror = [&](const Tensor& v) {
    Tensor z = model(v);  // a fresh output under no-grad: averaged in place
    mean_into(z, model(data::hflip(v)));
    return z;
  };
  Tensor z = mirror(x);
  if (level == 1) return z;
  Tensor shifted = mirror(data::crop_reflect(x, 1, 0, 0));
  mean_into(shifted, mirror(data::crop_reflect(x, 1, 2, 2)));
  mean_into(z, shifted);
  return z;
}

EvalResult evaluate(Module& model, const data::Dataset& ds, int64_t batch_size, BnStats bn_stats,
                    const data::Normalization& norm, int tta,
                    const std::function<void(const EvalProgress&)>& on_batch) {
  if (batch_size < 1) {
    throw std::invalid_argument("batch_size must be >= 1, got " + std::to_string(batch_size));
  }
  if (tta < 0 || tta > kMaxTtaLevel) {
    throw std::invalid_argument("tta must be 0, 1 or 2, got " + std::to_string(tta));
  }
  NoGradGuard no_grad;
  model.eval();
  // Batch statistics at test time: BN layers in train mode on their running buffers, which
  // `restore` puts back (and the model in eval mode) when the scope ends, also on an exception.
  struct RestoreBatchNorms {
    Module& model;
    std::vector<std::pair<BatchNorm*, std::pair<Tensor, Tensor>>> saved;
    ~RestoreBatchNorms() {
      for (auto& [bn, buffers] : saved) {
        bn->running_mean.copy_(buffers.first);
        bn->running_var.copy_(buffers.second);
      }
      model.eval();
    }
  } restore{model, {}};
  if (bn_stats == BnStats::kBatch) {
    for (BatchNorm* bn : model.modules_of<BatchNorm>()) {
      restore.saved.push_back({bn, {bn->running_mean.clone(), bn->running_var.clone()}});
      bn->train(true);
    }
  }
  EvalResult r;
  double loss_sum = 0.0;
  for (int64_t begin = 0; begin < ds.size(); begin += batch_size) {
    const int64_t count = std::min(batch_size, ds.size() - begin);
    Tensor x = data::to_tensor(ds, begin, count, norm);
    std::vector<int32_t> y(ds.labels.begin() + begin, ds.labels.begin() + begin + count);
    Tensor logits = tta_logits(model, x, tta);
    loss_sum += static_cast<double>(ops::cross_entropy(logits, y).item()) * count;
    const int64_t K = logits.size(1);
    if (r.confusion.empty()) r.confusion.assign(K, std::vector<int64_t>(K, 0));
    const float* z = logits.data();
    for (int64_t i = 0; i < count; ++i) {
      const int64_t pred = argmax_row(z, i, K);
      r.correct += pred == y[i];
      if (y[i] >= 0 && y[i] < K) r.confusion[y[i]][pred] += 1;
    }
    r.count += count;
    if (on_batch) on_batch({r.count, ds.size(), r.correct, loss_sum / r.count});
  }
  r.loss = r.count ? loss_sum / r.count : 0.0;
  return r;
}

EpochStats train_epoch(Module& model, data::DataLoader& loader, optim::Optimizer& opt,
                       const optim::Schedule& schedule, int64_t& step, float label_smoothing,
                       int64_t epoch, const std::function<void(const BatchProgress&)>& on_batch,
                       const StepHooks& hooks) {
  const auto t0 = std::chrono::steady_clock::now();
  EpochStats s;
  double loss_sum = 0.0;
  int64_t correct = 0, batch_index = 0;
  // The batches this call will take: the last epoch of a run of 9.9 epochs stops early.
  const int64_t num_batches =
      hooks.stop_at_step < 0
          ? loader.num_batches()
          : std::min(loader.num_batches(), std::max<int64_t>(0, hooks.stop_at_step - step));
  loader.start_epoch(epoch);
  NamedTensors trainable;  // checked for NaN and infinity after every step
  for (auto& [name, p] : model.named_parameters()) {
    if (p.requires_grad()) trainable.emplace_back(name, p);
  }
  data::Batch batch;
  auto t_step = t0;  // the end of the previous step
  while ((hooks.stop_at_step < 0 || step < hooks.stop_at_step) && loader.next(batch)) {
    const float lr = schedule.lr(step);
    opt.set_lr(lr);
    Tensor logits = model(batch.images);
    Tensor loss = ops::cross_entropy(logits, batch.labels, label_smoothing);
    const float l = loss.item();
    auto diverged = [&](float v) {
      return Diverged("the training loss is " + nonfinite_name(v) + " at epoch " +
                      std::to_string(epoch + 1) + ", batch " + std::to_string(batch_index + 1));
    };
    // Data parallelism: this process's mean loss weighted by its share of the global batch,
    // so that the sum of the processes' gradients is the global batch's mean gradient; the
    // finiteness check waits for the summed gradients, which every process sees alike.
    const bool parallel = static_cast<bool>(hooks.reduce_gradients);
    if (parallel) {
      loss = ops::scale(
          loss, static_cast<float>(batch.labels.size()) / static_cast<float>(batch.global_size));
    } else if (!std::isfinite(l)) {
      throw diverged(l);
    }
    {
      profiler::Scope prof("optimizer.zero_grad");
      opt.zero_grad();
    }
    loss.backward();
    if (parallel) {
      profiler::Scope prof("allreduce");
      if (!hooks.reduce_gradients()) {
        if (!std::isfinite(l)) throw diverged(l);
        throw Diverged("the gradient summed over the processes is not finite at epoch " +
                       std::to_string(epoch + 1) + ", batch " + std::to_string(batch_index + 1) +
                       " (another process's loss diverged)");
      }
    }
    if (hooks.after_backward) hooks.after_backward(batch, step, l);
    {
      profiler::Scope prof("optimizer.step");
      opt.step();
    }
    if (hooks.after_step) hooks.after_step(batch, step);
    for (const auto& [name, p] : trainable) {
      const float* w = p.data();
      for (int64_t i = 0, n = p.numel(); i < n; ++i) {
        if (!std::isfinite(w[i])) {
          throw Diverged("parameter \"" + name + "\" holds " + nonfinite_name(w[i]) + " (index " +
                         std::to_string(i) + ") after the step of epoch " +
                         std::to_string(epoch + 1) + ", batch " + std::to_string(batch_index + 1));
        }
      }
    }
    ++step;
    const int64_t n = static_cast<int64_t>(batch.labels.size());
    loss_sum += static_cast<double>(l) * n;
    const int64_t K = logits.size(1);
    const float* z = logits.data();
    for (int64_t i = 0; i < n; ++i) {
      correct += argmax_row(z, i, K) == batch.labels[i];
    }
    s.images += n;
    ++batch_index;
    if (hooks.on_step_end) {
      const auto now = std::chrono::steady_clock::now();
      StepEnd e;
      e.epoch = epoch;
      e.step = step;
      e.loss = l;
      e.lr = lr;
      e.images = batch.global_size > 0 ? batch.global_size : n;
      e.seconds = std::chrono::duration<double>(now - t_step).count();
      t_step = now;
      hooks.on_step_end(e);
    }
    if (on_batch) {
      on_batch({batch_index, num_batches, step, s.images, loss_sum / s.images,
                static_cast<double>(correct) / s.images, lr});
    }
  }
  s.batches = batch_index;
  s.loss = s.images ? loss_sum / s.images : 0.0;
  s.accuracy = s.images ? static_cast<double>(correct) / s.images : 0.0;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace minidl::train
