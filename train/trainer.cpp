#include "train/trainer.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/file_io.hpp"
#include "core/kernels.hpp"
#include "layers/batch_norm.hpp"
#include "layers/models/airbench.hpp"
#include "layers/models/registry.hpp"
#include "optim/adam.hpp"
#include "optim/lookahead.hpp"
#include "optim/sgd.hpp"

namespace minidl::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

FitDiverged::FitDiverged(const std::string& reason, int64_t kept_epoch, std::string checkpoint)
    : std::runtime_error("training diverged: " + reason + ". " +
                         (kept_epoch > 0
                              ? "Kept: the checkpoint of epoch " + std::to_string(kept_epoch) +
                                    " in \"" + checkpoint + "\""
                              : std::string("No checkpoint was written (no epoch of this run "
                                            "finished without diverging)"))),
      reason(reason),
      kept_epoch(kept_epoch),
      checkpoint(std::move(checkpoint)) {}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o, Module& model) {
  if (o.optimizer == OptimizerKind::kSgd) {
    return std::make_unique<optim::SGD>(
        model.parameters(),
        optim::SGDOptions{o.lr, o.momentum, o.weight_decay, o.nesterov && o.momentum > 0});
  }
  optim::AdamOptions a;
  a.lr = o.lr;
  a.weight_decay = o.weight_decay;
  a.decoupled_weight_decay = o.optimizer == OptimizerKind::kAdamW;
  return std::make_unique<optim::Adam>(model.parameters(), a);
}

data::LoaderOptions loader_options(const TrainOptions& o, int64_t train_images) {
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.shuffle = true;
  lo.augment = o.augment;
  lo.scheme = o.augment_scheme;
  lo.translate = o.translate;
  lo.drop_last = train_images > o.batch_size;  // a BN batch of one image would be an error
  lo.seed = o.seed;
  lo.norm = data::normalization_named(o.normalize, "normalize");
  return lo;
}

void set_batch_norm_training(Module& model, bool training) {
  for (BatchNorm* bn : model.modules_of<BatchNorm>()) bn->train(training);
}

int64_t count_parameters(const Module& model) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters()) n += p.numel();
  return n;
}

Trainer::Trainer(TrainOptions options, Callbacks callbacks)
    : o_(std::move(options)), cb_(std::move(callbacks)) {}

void Trainer::set_datasets(const data::Dataset* train, const data::Dataset* test) {
  train_ = train;
  test_ = test;
  have_datasets_ = true;
}

RunResult Trainer::fit(bool resume, int64_t stop_after) {
  const auto t_start = Clock::now();
  const TrainOptions& o = o_;
  validate(o);
  set_num_threads(o.threads);

  ModelOptions mo;
  mo.seed = o.seed;
  mo.bn_init = o.bn_init;
  model_ = create_model(o.model, mo);
  Module& model = *model_;

  data::Dataset train_own, test_own;
  if (!have_datasets_) {
    if (o.data.empty()) throw OptionError("data", "data: no CIFAR-10 directory given");
    train_own = data::load_cifar10(o.data, true, o.limit_train);
    test_own = data::load_cifar10(o.data, false, o.limit_test);
    train_ = &train_own;
    test_ = &test_own;
  }
  const data::Dataset& train = *train_;
  if (o.recipe == Recipe::kAirbench94 && train.size() < o.batch_size) {
    throw OptionError("limit_train",
                      "limit_train: the recipe drops incomplete batches, so it needs at least one "
                      "batch (" +
                          std::to_string(o.batch_size) + ") of training images, got " +
                          std::to_string(train.size()));
  }

  // Which parameters learn (requires_grad), before the optimizer sees them.
  std::vector<optim::UpdateMask> masks;
  if (!o.keep_model_frozen) {
    masks = optim::apply_train_only(model, o.train_only, o.seed);
  } else if (o.train_only != optim::TrainOnly::kAll) {
    std::vector<Tensor> frozen;
    for (const Tensor& p : model.parameters())
      if (!p.requires_grad()) frozen.push_back(p);
    masks = optim::apply_train_only(model, o.train_only, o.seed);
    for (Tensor& p : frozen) p.set_requires_grad(false);
  }
  opt_ = make_optimizer(o, model);
  optim::Optimizer& opt = *opt_;
  for (const auto& m : masks) opt.set_update_mask(m.param, m.mask);
  if (o.bn_bias_lr_scale != 1.0f) {  // the same decay per step: weight decay / scale
    for (BatchNorm* bn : model.modules_of<BatchNorm>()) {
      if (bn->bias.defined())
        opt.set_param_group(bn->bias, o.bn_bias_lr_scale, o.weight_decay / o.bn_bias_lr_scale);
    }
  }
  const int64_t trainable = optim::count_trainable(model, masks);

  const data::LoaderOptions lo = loader_options(o, train.size());
  data::DataLoader loader(train, lo);
  const int64_t per_epoch = loader.num_batches();
  const int64_t total_steps =
      static_cast<int64_t>(std::ceil(static_cast<double>(per_epoch) * o.epochs));
  const int64_t epochs = static_cast<int64_t>(std::ceil(o.epochs));

  optim::Schedule sched;
  if (o.schedule == optim::ScheduleKind::kPiecewise) {
    if (total_steps < 5) {
      throw OptionError("epochs", "epochs: the recipe needs at least 5 steps, got " +
                                      std::to_string(total_steps) + " (" +
                                      std::to_string(per_epoch) + " per epoch)");
    }
    sched = optim::Schedule::airbench94(total_steps, o.lr);
  } else {
    sched.kind = o.schedule;
    sched.base_lr = o.lr;
    sched.total_steps = total_steps;
    const double warmup = o.warmup_epochs < 0 ? 0.15 * o.epochs : o.warmup_epochs;
    sched.warmup_steps = static_cast<int64_t>(std::llround(warmup * per_epoch));
    for (double m : o.milestones) sched.milestones.push_back(std::llround(m * per_epoch));
    sched.gamma = o.gamma;
  }
  sched.validate();

  const bool writes = !o.out.empty();
  const std::string model_path = o.out + "/model.safetensors";
  int64_t start_epoch = 0, step = 0;
  std::string metrics = metrics_header();
  if (writes) fs::create_directories(o.out);
  if (resume) {
    if (!writes || !o.resumable) throw ResumeError("this run cannot be resumed (no train state)");
    const ResumePoint r = load_train_state(o.out, model, opt, o, per_epoch);
    start_epoch = r.epoch;
    step = r.step;
    metrics = r.metrics;
    // model.safetensors and metrics.csv follow the state (a kill between the writes of an
    // epoch can leave them one epoch apart).
    write_file_atomic(o.out + "/metrics.csv", metrics);
    bool model_current = false;
    try {
      model_current = checkpoint_epoch(o.out) == start_epoch;
    } catch (const std::runtime_error&) {
    }
    if (!model_current) {
      const std::vector<MetricsRow> rows = parse_metrics(metrics, o.out + "/metrics.csv");
      const double acc = rows.empty() ? 0.0 : rows.back().test_accuracy.value_or(0.0);
      save_checkpoint(model_path, model, o, start_epoch, acc);
    }
  }
  if (writes) write_config(o.out + "/config.json", o);

  RunResult result;
  auto* airbench = dynamic_cast<Airbench94*>(&model);
  if (airbench && start_epoch == 0) {  // the whitening conv from the first training images
    const auto t_whiten = Clock::now();
    airbench->init_whitening(
        data::to_tensor(train, 0, std::min<int64_t>(o.whitening_images, train.size()), lo.norm),
        o.whitening_eps);
    result.train_seconds += seconds_since(t_whiten);
  }
  std::unique_ptr<optim::Lookahead> lookahead;
  if (o.lookahead_every > 0) lookahead = std::make_unique<optim::Lookahead>(model);
  StepHooks hooks = cb_.step;
  hooks.stop_at_step = total_steps;
  if (lookahead) {
    hooks.after_step = [&, user = cb_.step.after_step](const data::Batch& b, int64_t s) {
      const int64_t done = s + 1;
      if (done % o.lookahead_every == 0)
        lookahead->update(model, optim::Lookahead::decay(done, total_steps));
      if (done >= total_steps) lookahead->update(model, 1.0f);
      if (user) user(b, s);
    };
  }

  if (cb_.on_fit_start) {
    cb_.on_fit_start(FitStart{o, model, count_parameters(model), trainable, train.size(),
                              test_ ? test_->size() : 0, epochs, start_epoch, per_epoch,
                              total_steps});
  }
  const int64_t end_epoch = stop_after > 0 ? std::min(epochs, start_epoch + stop_after) : epochs;
  int64_t images_total = 0;
  double loop_seconds = 0.0;
  for (int64_t epoch = start_epoch; epoch < end_epoch; ++epoch) {
    const auto t0 = Clock::now();
    if (airbench && o.whitening_bias_epochs >= 0)
      airbench->whiten->bias.set_requires_grad(epoch < o.whitening_bias_epochs);
    model.train();
    if (o.bn_stats == BnStatsMode::kRunning) set_batch_norm_training(model, false);
    if (cb_.on_epoch_start) cb_.on_epoch_start(epoch);
    const float lr_now = sched.lr(step);
    const int64_t kept = epoch;  // epochs whose checkpoint is on disk
    const std::string kept_path = writes && o.resumable && kept > 0 ? model_path : "";
    EpochStats tr;
    try {
      tr = train_epoch(model, loader, opt, sched, step, o.label_smoothing, epoch, cb_.on_batch_end,
                       hooks);
    } catch (const Diverged& e) {
      throw FitDiverged(e.what(), kept_path.empty() ? 0 : kept, kept_path);
    }
    result.train_seconds += tr.seconds;
    loop_seconds += tr.seconds;
    images_total += tr.images;
    if (cb_.on_train_epoch_end) cb_.on_train_epoch_end(epoch, tr);
    EpochEnd end;
    end.epochs = epochs;
    end.train = tr;
    if (test_ && (o.eval_every_epoch || epoch + 1 == epochs)) {
      if (cb_.on_evaluate_start) cb_.on_evaluate_start();
      const auto t_eval = Clock::now();
      end.test = evaluate(model, *test_, o.eval_batch_size, BnStats::kRunning, lo.norm, 0);
      result.eval_seconds += seconds_since(t_eval);
      if (!std::isfinite(end.test->loss)) {
        throw FitDiverged("the test loss is " + nonfinite_name(end.test->loss) + " after epoch " +
                              std::to_string(epoch + 1),
                          kept_path.empty() ? 0 : kept, kept_path);
      }
      result.test_accuracy = result.test_accuracy_tta = end.test->accuracy();
      result.test_loss = end.test->loss;
    }
    MetricsRow& row = end.row;
    row.epoch = epoch + 1;
    row.train_loss = tr.loss;
    row.train_accuracy = tr.accuracy;
    if (end.test) {
      row.test_loss = end.test->loss;
      row.test_accuracy = end.test->accuracy();
    }
    row.lr = lr_now;
    row.seconds = seconds_since(t0);
    row.images_per_second = tr.images / tr.seconds;
    metrics += format_metrics_row(row);
    if (writes && o.resumable) {
      // The epoch's commit point is train_state.safetensors; the other two files follow it.
      save_train_state(o.out + "/train_state.safetensors", model, opt, o.model, epoch + 1, step,
                       metrics);
      save_checkpoint(model_path, model, o, epoch + 1, result.test_accuracy);
    }
    if (writes) write_file_atomic(o.out + "/metrics.csv", metrics);
    result.train_accuracy = tr.accuracy;
    result.epochs_run += 1;
    if (cb_.on_epoch_end) cb_.on_epoch_end(end);
  }
  result.epochs_done = end_epoch;
  result.steps = step;
  result.finished = end_epoch == epochs;
  result.trainable_parameters = trainable;
  result.images_per_second = loop_seconds > 0 ? images_total / loop_seconds : 0.0;
  if (result.finished && o.tta > 0 && test_) {
    if (cb_.on_evaluate_start) cb_.on_evaluate_start();
    const auto t_eval = Clock::now();
    result.test_accuracy_tta =
        evaluate(model, *test_, o.eval_batch_size, BnStats::kRunning, lo.norm, o.tta).accuracy();
    result.eval_seconds += seconds_since(t_eval);
  }
  if (writes && result.finished && (!o.resumable || o.tta > 0)) {
    save_checkpoint(model_path, model, o, epochs, result.test_accuracy, result.test_accuracy_tta);
  }
  result.total_seconds = seconds_since(t_start);
  if (writes && result.finished) write_results(o.out + "/results.json", o, result);
  return result;
}

}  // namespace minidl::train
