#include "train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>

#include "core/autograd.hpp"
#include "core/file_io.hpp"
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/system.hpp"
#include "layers/batch_norm.hpp"
#include "layers/models/airbench.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/resnet.hpp"
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

/// Images [lo, hi) of `ds`.
data::Dataset slice(const data::Dataset& ds, int64_t lo, int64_t hi) {
  data::Dataset s;
  s.images.assign(ds.images.begin() + lo * data::kImageBytes,
                  ds.images.begin() + hi * data::kImageBytes);
  s.labels.assign(ds.labels.begin() + lo, ds.labels.begin() + hi);
  return s;
}

/// The sums of a split evaluation: every process evaluated its slice; loss, counts and the
/// confusion matrix summed over the processes (in rank order).
EvalResult sum_over(dist::ProcessGroup& g, const EvalResult& r) {
  uint64_t k = r.confusion.size();  // rank 0's (it holds at least one test image)
  g.broadcast(&k, 1, 0);
  const int64_t classes = static_cast<int64_t>(k);
  std::vector<double> v = {r.loss * static_cast<double>(r.count), static_cast<double>(r.correct),
                           static_cast<double>(r.count)};
  for (int64_t i = 0; i < classes; ++i)
    for (int64_t j = 0; j < classes; ++j)
      v.push_back(r.confusion.empty() ? 0.0 : static_cast<double>(r.confusion[i][j]));
  dist::allreduce_sum_ordered(g, v.data(), static_cast<int64_t>(v.size()));
  EvalResult out;
  out.count = static_cast<int64_t>(v[2]);
  out.correct = static_cast<int64_t>(v[1]);
  out.loss = out.count ? v[0] / static_cast<double>(out.count) : 0.0;
  out.confusion.assign(classes, std::vector<int64_t>(classes, 0));
  for (int64_t i = 0; i < classes; ++i)
    for (int64_t j = 0; j < classes; ++j)
      out.confusion[i][j] = static_cast<int64_t>(v[3 + i * classes + j]);
  return out;
}

/// The epoch's training statistics over every process (sums in rank order).
EpochStats sum_over(dist::ProcessGroup& g, const EpochStats& s) {
  std::vector<double> v = {s.loss * static_cast<double>(s.images),
                           s.accuracy * static_cast<double>(s.images),
                           static_cast<double>(s.images)};
  dist::allreduce_sum_ordered(g, v.data(), 3);
  EpochStats out = s;
  out.images = static_cast<int64_t>(v[2]);
  out.loss = out.images ? v[0] / v[2] : 0.0;
  out.accuracy = out.images ? v[1] / v[2] : 0.0;
  return out;
}

/// Broadcasts rank 0's optimizer buffers (their sizes first: [0] before a first update).
void broadcast_optimizer(dist::ProcessGroup& g, optim::Optimizer& opt) {
  const auto buffers = opt.state_buffers();
  std::vector<uint64_t> sizes;
  for (const auto& b : buffers) sizes.push_back(b.values->size());
  sizes.push_back(static_cast<uint64_t>(opt.step_count()));
  g.broadcast(sizes.data(), static_cast<int64_t>(sizes.size()), 0);
  for (size_t i = 0; i < buffers.size(); ++i) {
    buffers[i].values->resize(sizes[i]);
    g.broadcast(buffers[i].values->data(), static_cast<int64_t>(sizes[i]), 0);
  }
  opt.set_step_count(static_cast<int64_t>(sizes.back()));
}
}  // namespace

void broadcast_state(dist::ProcessGroup& group, Module& model) {
  for (auto& [name, t] : model.state_dict()) group.broadcast(t.mutable_data(), t.numel(), 0);
}

void broadcast_buffers(dist::ProcessGroup& group, Module& model) {
  for (auto& [name, t] : model.named_buffers()) group.broadcast(t.mutable_data(), t.numel(), 0);
}

void check_replicas(dist::ProcessGroup& group, const Module& model) {
  const NamedTensors state = model.state_dict();
  std::vector<uint64_t> mine;
  for (const auto& [name, t] : state)
    mine.push_back(dist::hash_bytes(t.data(), sizeof(float) * static_cast<size_t>(t.numel())));
  const int64_t n = static_cast<int64_t>(mine.size());
  std::vector<uint64_t> all(static_cast<size_t>(n * group.size()));
  group.allgather(mine.data(), n, all.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int r = 1; r < group.size(); ++r) {
      if (all[r * n + i] != all[i]) {
        throw std::runtime_error("the replicas differ: tensor \"" + state[i].first + "\" on rank " +
                                 std::to_string(r) +
                                 " is not rank 0's (the processes no longer train one model)");
      }
    }
  }
}

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

int64_t StepMemory::at(int64_t batch) const {
  if (batch > 0 && bytes_per_image > (INT64_MAX - fixed_bytes) / batch) return INT64_MAX;
  return fixed_bytes + batch * bytes_per_image;
}

StepMemory measure_step_memory(const std::string& model_name, const ModelOptions& mo, bool train) {
  const int64_t base = storage_bytes();
  std::shared_ptr<Module> model = create_model(model_name, mo);
  std::unique_ptr<optim::SGD> opt;
  if (train) {
    model->train();
    opt = std::make_unique<optim::SGD>(model->parameters(),
                                       optim::SGDOptions{0.01f, 0.9f, 0.0f, false});
  } else {
    model->eval();
  }
  Generator gen(1);
  auto step = [&](int64_t n) {  // returns the step's peak above `base`
    Tensor x({n, 3, 32, 32});
    for (float& v : x.mutable_vec()) v = gen.normal();
    const std::vector<int32_t> y(static_cast<size_t>(n), 0);
    reset_peak_storage_bytes();
    if (train) {
      Tensor loss = ops::cross_entropy((*model)(x), y);
      opt->zero_grad();
      loss.backward();
      opt->step();
    } else {
      NoGradGuard no_grad;
      Tensor logits = (*model)(x);
    }
    return peak_storage_bytes() - base;
  };
  step(2);  // the optimizer's buffers and every gradient exist from here on
  const int64_t two = step(2), four = step(4);
  StepMemory m;
  m.bytes_per_image = std::max<int64_t>(0, (four - two) / 2);
  m.fixed_bytes = std::max<int64_t>(0, two - 2 * m.bytes_per_image);
  return m;
}

void check_batch_memory(const std::string& model_name, const ModelOptions& mo, int64_t batch_size,
                        bool train) {
  const int64_t available = available_memory_bytes();
  if (available < 0) return;
  const StepMemory m = measure_step_memory(model_name, mo, train);
  const int64_t needed = m.at(batch_size);
  if (needed <= available) return;
  throw OptionError("batch_size",
                    "batch_size " + std::to_string(batch_size) + ": " +
                        (train ? "a training step" : "an inference step") + " of " + model_name +
                        " needs about " + gib_text(needed) + " (" + with_thousands(needed) +
                        " bytes: " + with_thousands(m.fixed_bytes) + " for the model and " +
                        with_thousands(m.bytes_per_image) + " per image), more than the " +
                        bytes_text(available) + " this machine has available");
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
  if (!group_) group_ = dist::local_group();
  dist::ProcessGroup& group = *group_;
  const int world = group.size(), rank = group.rank();
  const bool parallel = world > 1;
  if (parallel && o.batch_size < world) {
    throw OptionError("batch_size", "batch_size must be at least the number of processes (" +
                                        std::to_string(world) + "), got " +
                                        std::to_string(o.batch_size));
  }
  // Rank 0 alone reports (the step hooks run everywhere: they are part of training).
  Callbacks cb = rank == 0 ? cb_ : Callbacks{};
  cb.step = cb_.step;
  // Rank 0 alone writes, holding the run directory's lock throughout.
  const bool writes = !o.out.empty() && rank == 0;
  std::unique_ptr<RunLock> lock;
  if (writes) {
    lock = std::make_unique<RunLock>(o.out);
    const std::vector<std::string> existing = run_files(o.out);
    if (!resume && !existing.empty() && existing_ == ExistingRun::kRefuse) {
      std::string list;
      for (const std::string& f : existing) list += (list.empty() ? "" : ", ") + f;
      throw RunExists("run directory \"" + o.out + "\" already holds a run (" + list +
                      "); a new run there would replace it");
    }
  }
  // A writer whose run is interrupted holds the interruption until the files are written.
  auto commit = [&cb](int64_t saved_epoch, const std::function<void()>& write) {
    if (cb.on_commit_start) cb.on_commit_start();
    write();
    if (cb.on_commit_end) cb.on_commit_end(saved_epoch);
  };

  model_ = create_model(o.model, model_options(o));
  Module& model = *model_;
  auto* whitened_resnet = o.stem_whitening ? dynamic_cast<CifarResNet*>(&model) : nullptr;
  if (o.stem_whitening && !whitened_resnet) {
    throw OptionError("stem_whitening",
                      "stem_whitening sets a resnet<D>[_<W>] stem; model " + o.model + " has none");
  }

  data::Dataset train_own, test_own;
  if (!have_datasets_) {
    if (o.data.empty()) throw OptionError("data", "data: no CIFAR-10 directory given");
    train_own = data::load_cifar10(o.data, true, o.limit_train);
    test_own = data::load_cifar10(o.data, false, o.limit_test);
    train_ = &train_own;
    test_ = &test_own;
  }
  const data::Dataset& train = *train_;
  if (parallel && (train.size() < world || (test_ && test_->size() < world))) {
    throw OptionError("limit_train", "limit_train: " + std::to_string(world) +
                                         " processes need at least as many training and test "
                                         "images");
  }
  // Evaluation is split: process r evaluates its contiguous slice of the test set.
  data::Dataset test_part;
  const data::Dataset* test = test_;
  if (parallel && test_) {
    const int64_t n = test_->size();
    test_part = slice(*test_, n * rank / world, n * (rank + 1) / world);
    test = &test_part;
  }
  if (o.recipe == Recipe::kAirbench94 && train.size() < o.batch_size) {
    throw OptionError("limit_train",
                      "limit_train: the recipe drops incomplete batches, so it needs at least one "
                      "batch (" +
                          std::to_string(o.batch_size) + ") of training images, got " +
                          std::to_string(train.size()));
  }

  // The step must fit in memory: measured at 2 and 4 images, refused before the first batch.
  check_batch_memory(o.model, model_options(o),
                     (std::min(o.batch_size, train.size()) + world - 1) / world, true);

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
  for (BatchNorm* bn : model.modules_of<BatchNorm>()) {
    if (o.bn_sync != BnSync::kNone) bn->sync_group = group_;
    bn->exact_statistics = o.bn_sync == BnSync::kExact;
    bn->group_size = o.bn_group_size;
  }
  // Batch Renorm's r_max and d_max follow their ramp, set before each step.
  const std::vector<BatchNorm*> renormed =
      o.bn_renorm ? model.modules_of<BatchNorm>() : std::vector<BatchNorm*>{};
  auto set_renorm = [&o, renormed](int64_t step, int64_t total) {
    for (BatchNorm* bn : renormed) bn->renorm = renorm_at(o, step, total);
  };

  data::LoaderOptions lo = loader_options(o, train.size());
  lo.world_size = world;
  lo.rank = rank;
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

  const std::string model_path = o.out + "/model.safetensors";
  int64_t start_epoch = 0, step = 0;
  std::string metrics = metrics_header();
  if (resume && parallel) {
    // Rank 0 reads the run directory; the others wait for its verdict, then take its state.
    uint64_t ok = 1;
    std::string why;
    if (rank == 0) {
      try {
        if (!o.resumable) throw ResumeError("this run cannot be resumed (no train state)");
        const ResumePoint r = load_train_state(o.out, model, opt, o, per_epoch);
        start_epoch = r.epoch;
        step = r.step;
        metrics = r.metrics;
      } catch (const std::exception& e) {
        ok = 0;
        why = e.what();
      }
    }
    group.broadcast(&ok, 1, 0);
    if (!ok) {
      if (rank == 0) throw ResumeError(why);
      throw ResumeError("rank 0 could not continue the run (its message says why)");
    }
    std::vector<uint64_t> at = {static_cast<uint64_t>(start_epoch), static_cast<uint64_t>(step)};
    group.broadcast(at.data(), 2, 0);
    start_epoch = static_cast<int64_t>(at[0]);
    step = static_cast<int64_t>(at[1]);
    broadcast_optimizer(group, opt);
  }
  if (resume && !parallel) {
    if (o.out.empty() || !o.resumable)
      throw ResumeError("this run cannot be resumed (no train state)");
    const ResumePoint r = load_train_state(o.out, model, opt, o, per_epoch);
    start_epoch = r.epoch;
    step = r.step;
    metrics = r.metrics;
    // model.safetensors and metrics.csv follow the state (a kill between the writes of an
    // epoch can leave them one epoch apart).
    commit(start_epoch, [&] {
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
    });
  }
  // log.jsonl: held in memory until the run's first commit point, then appended line by line
  // (a resumed run: to the lines of the epochs it continues).
  LogFile log(o.out + "/log.jsonl");
  if (resume && writes) {
    commit(start_epoch, [&] {
      trim_run_log(log.path(), start_epoch, step);
      log.open(true);
    });
  }
  // config.json is written at the first commit point (below): until then the folder keeps
  // whatever it held.
  bool config_written = false;

  RunResult result;
  auto* airbench = dynamic_cast<Airbench94*>(&model);
  if ((airbench || whitened_resnet) && start_epoch == 0) {  // a stem from the training images
    const auto t_whiten = Clock::now();
    const Tensor images =
        data::to_tensor(train, 0, std::min<int64_t>(o.whitening_images, train.size()), lo.norm);
    if (airbench) {
      airbench->init_whitening(images, o.whitening_eps);
    } else {
      try {
        whitened_resnet->init_stem_whitening(images, o.whitening_eps);
      } catch (const std::invalid_argument& e) {
        throw OptionError("stem_whitening", std::string("stem_whitening: ") + e.what());
      }
    }
    result.train_seconds += seconds_since(t_whiten);
  }
  if (parallel) broadcast_state(group, model);  // one model: rank 0's
  std::unique_ptr<optim::Lookahead> lookahead;
  if (o.lookahead_every > 0) lookahead = std::make_unique<optim::Lookahead>(model);
  StepHooks hooks = cb_.step;
  hooks.stop_at_step = total_steps;
  std::vector<float> flat;  // the trainable gradients, one buffer (one collective per step)
  if (parallel) {
    std::vector<Tensor> params;
    for (const Tensor& p : model.parameters())
      if (p.requires_grad()) params.push_back(p);
    hooks.reduce_gradients = [&group, &o, &flat, params]() {
      flat.clear();
      for (const Tensor& p : params) {
        if (p.has_grad()) {
          const float* g = p.grad_data();
          flat.insert(flat.end(), g, g + p.numel());
        } else {
          flat.insert(flat.end(), static_cast<size_t>(p.numel()), 0.0f);
        }
      }
      const int64_t n = static_cast<int64_t>(flat.size());
      if (o.reduction == GradientReduction::kOrdered)
        dist::allreduce_sum_ordered(group, flat.data(), n);
      else
        group.allreduce_sum(flat.data(), n);
      bool finite = true;
      size_t k = 0;
      for (const Tensor& p : params) {
        float* g = p.grad_data();  // allocated (zeros) if this process had none
        for (int64_t i = 0; i < p.numel(); ++i, ++k) {
          g[i] = flat[k];
          finite = finite && std::isfinite(flat[k]);
        }
      }
      return finite;
    };
  }
  if (lookahead) {
    hooks.after_step = [&, user = cb_.step.after_step](const data::Batch& b, int64_t s) {
      const int64_t done = s + 1;
      if (done % o.lookahead_every == 0)
        lookahead->update(model, optim::Lookahead::decay(done, total_steps));
      if (done >= total_steps) lookahead->update(model, 1.0f);
      if (user) user(b, s);
    };
  }
  if (writes) {
    hooks.on_step_end = [&log, user = hooks.on_step_end](const StepEnd& e) {
      log.write(format_step_record(e));
      if (user) user(e);
    };
  }
  if (!renormed.empty()) {
    hooks.after_step = [set_renorm, total_steps, inner = hooks.after_step](const data::Batch& b,
                                                                           int64_t s) {
      set_renorm(s + 1, total_steps);
      if (inner) inner(b, s);
    };
  }

  const int64_t end_epoch = stop_after > 0 ? std::min(epochs, start_epoch + stop_after) : epochs;
  if (cb.on_fit_start) {
    cb.on_fit_start(FitStart{o, model, count_parameters(model), trainable, train.size(),
                             test_ ? test_->size() : 0, epochs, start_epoch, end_epoch, per_epoch,
                             total_steps, world});
  }
  // A data-parallel checkpoint says whose BatchNorm statistics it holds.
  std::map<std::string, std::string> meta;
  if (parallel) {
    meta["world_size"] = std::to_string(world);
    meta["running_statistics"] =
        o.bn_sync != BnSync::kNone
            ? "synchronized: every process normalized with the global batch's statistics"
            : "rank 0's: each process normalized its own slice of the batch; rank 0's running "
              "statistics were broadcast to every process at the end of each epoch";
  }
  // The test pass: this process's slice, summed over the processes when parallel.
  auto evaluate_here = [&](const data::Dataset& part, int64_t epoch, int tta = 0) {
    if (cb.on_evaluate_start) cb.on_evaluate_start({epoch, part.size(), tta});
    const EvalResult r = evaluate(model, part, o.eval_batch_size, BnStats::kRunning, lo.norm, tta,
                                  cb.on_evaluate_batch);
    return parallel ? sum_over(group, r) : r;
  };
  int64_t images_total = 0;
  double loop_seconds = 0.0;
  for (int64_t epoch = start_epoch; epoch < end_epoch; ++epoch) {
    const auto t0 = Clock::now();
    if (airbench && o.whitening_bias_epochs >= 0)
      airbench->whiten->bias.set_requires_grad(epoch < o.whitening_bias_epochs);
    model.train();
    if (o.bn_stats == BnStatsMode::kRunning) set_batch_norm_training(model, false);
    if (cb.on_epoch_start) cb.on_epoch_start(epoch);
    const float lr_now = sched.lr(step);
    if (!renormed.empty()) set_renorm(step, total_steps);  // then after every step
    const int64_t kept = epoch;                            // epochs whose checkpoint is on disk
    const std::string kept_path = writes && o.resumable && kept > 0 ? model_path : "";
    EpochStats tr;
    try {
      tr = train_epoch(model, loader, opt, sched, step, o.label_smoothing, epoch, cb.on_batch_end,
                       hooks);
    } catch (const Diverged& e) {
      throw FitDiverged(e.what(), kept_path.empty() ? 0 : kept, kept_path);
    }
    if (parallel) {
      tr = sum_over(group, tr);
      broadcast_buffers(group, model);  // BatchNorm's running statistics: rank 0's
      check_replicas(group, model);
    }
    result.train_seconds += tr.seconds;
    loop_seconds += tr.seconds;
    images_total += tr.images;
    if (cb.on_train_epoch_end) cb.on_train_epoch_end(epoch, tr);
    EpochEnd end;
    end.epochs = epochs;
    end.train = tr;
    if (test_ && (o.eval_every_epoch || epoch + 1 == epochs)) {
      const auto t_eval = Clock::now();
      end.test = evaluate_here(*test, epoch);
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
    if (writes) {
      commit(o.resumable ? epoch + 1 : 0, [&] {
        if (!config_written) {
          if (!resume) {  // a replaced run's state and results go before the new config
            fs::remove(o.out + "/train_state.safetensors");
            fs::remove(o.out + "/results.json");
          }
          write_config(o.out + "/config.json", o);
          config_written = true;
        }
        // The log first: a kill before the commit point below cuts these lines on --resume.
        log.write(format_epoch_record(row, step));
        log.open(false);  // a new run's first commit: replaces an old log.jsonl
        if (o.resumable) {
          // The epoch's commit point is train_state.safetensors; the other two files follow.
          save_train_state(o.out + "/train_state.safetensors", model, opt, o.model, epoch + 1, step,
                           metrics);
          save_checkpoint(model_path, model, o, epoch + 1, result.test_accuracy,
                          std::numeric_limits<double>::quiet_NaN(), meta);  // no TTA pass yet
        }
        write_file_atomic(o.out + "/metrics.csv", metrics);
      });
    }
    result.train_accuracy = tr.accuracy;
    result.train_loss = tr.loss;
    result.epochs_run += 1;
    if (cb.on_epoch_end) cb.on_epoch_end(end);
  }
  result.epochs_done = end_epoch;
  result.steps = step;
  result.finished = end_epoch == epochs;
  result.trainable_parameters = trainable;
  result.images_per_second = loop_seconds > 0 ? images_total / loop_seconds : 0.0;
  if (result.finished && o.tta > 0 && test_) {
    const auto t_eval = Clock::now();
    result.test_accuracy_tta = evaluate_here(*test, epochs - 1, o.tta).accuracy();
    result.eval_seconds += seconds_since(t_eval);
  }
  result.total_seconds = seconds_since(t_start);
  if (writes && result.finished) {
    commit(epochs, [&] {
      if (!o.resumable || o.tta > 0) {
        save_checkpoint(model_path, model, o, epochs, result.test_accuracy,
                        result.test_accuracy_tta, meta);
      }
      write_results(o.out + "/results.json", o, result,
                    parse_metrics(metrics, o.out + "/metrics.csv"));
    });
  } else if (writes && result.epochs_run > 0) {  // stopped early (stop_after): where it stands
    commit(o.resumable ? end_epoch : 0, [&] {
      write_results(o.out + "/results.json", o, result,
                    parse_metrics(metrics, o.out + "/metrics.csv"));
    });
  }
  return result;
}

}  // namespace minidl::train
