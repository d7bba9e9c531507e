// minidl train — the flags of a training run, mapped onto train::TrainOptions, and the printing
// of its progress (the Trainer's callbacks). The run itself is train::Trainer's.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "apps/cli.hpp"
#include "dist/process_group.hpp"
#include "train/trainer.hpp"

namespace minidl::app {

namespace {

using Clock = std::chrono::steady_clock;

/// The train command's flags beyond TrainOptions.
struct TrainArgs {
  train::TrainOptions o;
  std::string resume;
  int64_t stop_after = -1;
  bool profile = false;
  int tta = 2;
  bool eval_every_epoch = false;
  train::Recipe recipe = train::Recipe::kDefault;
};

/// Printing, the progress bar and --profile as Trainer callbacks.
train::Callbacks console(const TrainArgs& a, const train::TrainOptions& o) {
  struct State {
    Clock::time_point epoch_start;
    std::unique_ptr<ProfileWindow> profile;
    int64_t first_epoch = -1;
  };
  auto st = std::make_shared<State>();
  const bool tty = isatty(STDERR_FILENO);
  train::Callbacks cb;
  cb.on_fit_start = [&o, st](const train::FitStart& f) {
    st->first_epoch = f.start_epoch;
    if (o.recipe == train::Recipe::kAirbench94) {
      std::printf(
          "minidl train --recipe airbench94: %lld parameters, %lld train / %lld test images, %g "
          "epochs = %lld steps of %lld images, sgd nesterov lr %.4g (BN biases x%g), %d threads "
          "-> %s\n",
          static_cast<long long>(f.parameters), static_cast<long long>(f.train_images),
          static_cast<long long>(f.test_images), o.epochs, static_cast<long long>(f.total_steps),
          static_cast<long long>(o.batch_size), o.lr, o.bn_bias_lr_scale, o.threads, o.out.c_str());
    } else {
      std::string model = o.model;  // with its normalization when not BatchNorm
      if (o.norm == NormKind::kGroup)
        model += " --norm gn --gn-groups " + std::to_string(o.gn_groups);
      else if (o.norm != NormKind::kBatch)
        model += " --norm " + name_of(o.norm);
      std::printf(
          "minidl train: %s, %lld parameters (%lld trainable: --train-only %s, --bn-stats %s), "
          "%lld train / %lld test images, %lld epochs of %lld batches, %s lr %g (%s), %d "
          "threads -> %s\n",
          model.c_str(), static_cast<long long>(f.parameters), static_cast<long long>(f.trainable),
          name_of(o.train_only).c_str(), name_of(o.bn_stats).c_str(),
          static_cast<long long>(f.train_images), static_cast<long long>(f.test_images),
          static_cast<long long>(f.epochs), static_cast<long long>(f.batches_per_epoch),
          name_of(o.optimizer).c_str(), o.lr, name_of(o.schedule).c_str(), o.threads,
          o.out.c_str());
    }
    if (f.world_size > 1) {
      std::printf("data-parallel: %d processes, global batch %lld, BatchNorm statistics %s\n",
                  f.world_size, static_cast<long long>(o.batch_size),
                  o.bn_sync == train::BnSync::kNone
                      ? "per process"
                      : ("synchronized (" + name_of(o.bn_sync) + ")").c_str());
    }
    std::fflush(stdout);
  };
  cb.on_epoch_start = [st, profile = a.profile](int64_t epoch) {
    st->epoch_start = Clock::now();
    // --profile: the first epoch of this invocation, training loop only.
    if (profile && epoch == st->first_epoch) st->profile = std::make_unique<ProfileWindow>(true);
  };
  if (tty) {
    cb.on_batch_end = [st](int64_t i, int64_t n, double loss) {
      const double el = std::chrono::duration<double>(Clock::now() - st->epoch_start).count();
      const int width = 30, done = static_cast<int>(width * i / n);
      std::fprintf(stderr, "\r  [%s%s] %lld/%lld loss %.4f ETA %s   ",
                   std::string(done, '=').c_str(), std::string(width - done, ' ').c_str(),
                   static_cast<long long>(i), static_cast<long long>(n), loss,
                   format_duration(el / i * (n - i)).c_str());
      if (i == n) std::fprintf(stderr, "\r%s\r", std::string(80, ' ').c_str());
    };
  }
  cb.on_train_epoch_end = [st](int64_t, const train::EpochStats&) {
    if (st->profile) st->profile->stop();
  };
  cb.on_epoch_end = [st](const train::EpochEnd& e) {
    print_epoch_line(e);
    if (st->profile) {
      std::printf(
          "per-op profile of epoch %lld (%lld batches, training loop %.3f s, evaluation "
          "excluded):\n%s",
          static_cast<long long>(e.row.epoch), static_cast<long long>(e.train.batches),
          e.train.seconds, profiler::table(e.train.seconds, e.train.batches).c_str());
      st->profile.reset();
    }
    std::fflush(stdout);
  };
  return cb;
}

/// Runs the parsed command: the options (from the flags, or the run's config.json with
/// --resume), the Trainer, and the last line.
void run(TrainArgs& a, CLI::App* sub) {
  auto given = [sub](const char* flag) { return sub->get_option(flag)->count() > 0; };
  train::TrainOptions o = a.o;
  if (a.recipe == train::Recipe::kAirbench94) {
    static const char* const taken[] = {
        "--data",   "--seed",       "--tta",         "--out",        "--threads",
        "--epochs", "--batch-size", "--limit-train", "--limit-test", "--eval-every-epoch",
        "--recipe", "--help"};
    for (CLI::Option* opt : sub->get_options()) {
      bool ok = false;
      for (const char* t : taken) ok = ok || opt->get_name() == t;
      if (opt->count() > 0 && !ok) {
        std::string list;
        for (const char* t : taken)
          if (std::string(t) != "--recipe" && std::string(t) != "--help")
            list += (list.empty() ? "" : ", ") + std::string(t);
        throw std::invalid_argument(opt->get_name() +
                                    " is fixed by --recipe airbench94 (it takes " + list + ")");
      }
    }
    o = train::airbench94_options(given("--batch-size") ? a.o.batch_size : 1024,
                                  given("--epochs") ? a.o.epochs : 9.9);
    o.data = a.o.data;
    o.seed = a.o.seed;
    o.threads = a.o.threads;
    o.limit_train = a.o.limit_train;
    o.limit_test = a.o.limit_test;
    if (given("--out")) o.out = a.o.out;
    o.tta = a.tta;
    o.eval_every_epoch = a.eval_every_epoch;
  } else {
    if (given("--tta"))
      throw std::invalid_argument(
          "--tta is for --recipe airbench94 (minidl eval --tta evaluates any checkpoint with "
          "test-time augmentation)");
    if (given("--eval-every-epoch"))
      throw std::invalid_argument(
          "--eval-every-epoch is for --recipe airbench94 (the default recipe evaluates after "
          "every epoch)");
  }
  const bool resume = given("--resume");
  if (resume) {
    if (a.resume.empty()) throw std::invalid_argument("--resume: give the run directory");
    try {
      train::TrainOptions saved = train::read_config(a.resume + "/config.json");
      // The model is the run's: a different normalization would not fit its checkpoint.
      if (given("--norm") && a.o.norm != saved.norm)
        throw std::invalid_argument("--norm " + name_of(a.o.norm) + ": the run was trained with " +
                                    name_of(saved.norm) + " (its config.json); resuming keeps it");
      if (given("--gn-groups") && a.o.gn_groups != saved.gn_groups)
        throw std::invalid_argument(
            "--gn-groups " + std::to_string(a.o.gn_groups) + ": the run was trained with " +
            std::to_string(saved.gn_groups) + " (its config.json); resuming keeps it");
      if (given("--epochs")) saved.epochs = a.o.epochs;
      saved.threads = a.o.threads;  // the order of sums depends on it: pass the run's
      if (given("--data")) saved.data = a.o.data;
      saved.out = a.resume;
      o = saved;
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string("--resume: ") + e.what());
    }
  }
  o.data = resolve_data_dir(o.data);
  if (given("--bn-sync")) o.bn_sync = a.o.bn_sync;
  if (given("--bn-group-size")) o.bn_group_size = a.o.bn_group_size;
  if (given("--allreduce")) o.reduction = a.o.reduction;
  if (given("--bn-renorm")) o.bn_renorm = a.o.bn_renorm;
  // Under mpirun every process runs this; rank 0 alone prints and writes.
  const std::shared_ptr<dist::ProcessGroup> group = dist::default_group();
  try {
    train::Trainer trainer(o, console(a, o));
    trainer.set_process_group(group);
    const train::RunResult r = trainer.fit(resume, a.stop_after);
    const std::string ck = o.out + "/model.safetensors";
    if (group->rank() != 0) return;
    if (o.tta > 0 && r.finished) {
      std::printf(
          "done: test accuracy %.2f%% with TTA level %d, %.2f%% without; wall time %s (training "
          "%s, evaluation %s); checkpoint %s\n",
          100 * r.test_accuracy_tta, o.tta, 100 * r.test_accuracy,
          format_duration(r.total_seconds).c_str(), format_duration(r.train_seconds).c_str(),
          format_duration(r.eval_seconds).c_str(), ck.c_str());
    } else {
      std::printf("done: test accuracy %.2f%% after %lld epochs in %s; checkpoint %s\n",
                  100 * r.test_accuracy, static_cast<long long>(r.epochs_done),
                  format_duration(r.total_seconds).c_str(), ck.c_str());
    }
  } catch (const train::FitDiverged& e) {
    throw std::runtime_error("training diverged: " + e.reason + " (try a smaller --lr). " +
                             (e.kept_epoch > 0
                                  ? "Kept: the checkpoint of epoch " +
                                        std::to_string(e.kept_epoch) + " in \"" + e.checkpoint +
                                        "\" (continue it with --resume " + o.out + ")"
                                  : std::string("No checkpoint was written (no epoch of this run "
                                                "finished without diverging)")));
  } catch (const train::ResumeError& e) {
    throw std::runtime_error(std::string("--resume: ") + e.what());
  }
}

}  // namespace

void print_epoch_line(const train::EpochEnd& e) {
  char loss[16] = "     -", acc[16] = "     - ";
  if (e.test) {
    std::snprintf(loss, sizeof loss, "%.4f", e.test->loss);
    std::snprintf(acc, sizeof acc, "%6.2f%%", 100 * e.test->accuracy());
  }
  std::printf(
      "epoch %3lld/%lld  train loss %.4f acc %6.2f%%  test loss %s acc %s  lr %.4g  %.1fs  "
      "%.0f img/s\n",
      static_cast<long long>(e.row.epoch), static_cast<long long>(e.epochs), e.row.train_loss,
      100 * e.row.train_accuracy, loss, acc, e.row.lr, e.row.seconds, e.row.images_per_second);
  std::fflush(stdout);
}

Command add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  train::TrainOptions& o = a->o;
  const long long kEpochs = 100000;
  auto* t = app.add_subcommand("train", "train a model on CIFAR-10");
  t->add_option("--data", o.data, "CIFAR-10 binary directory (or $MINIDL_DATA)");
  t->add_option("--model", o.model,
                "resnet<D>[_<W>] (e.g. resnet20, resnet14_64), vgg11[_bn|_noisybn][_w<k>] (e.g. "
                "vgg11_bn_w4), airbench94 or cnn")
      ->capture_default_str();
  t->add_option_function<int64_t>(
       "--epochs", [&o](int64_t e) { o.epochs = static_cast<double>(e); }, "epochs (default 30)")
      ->check(integer_in(1, kEpochs));
  t->add_option("--batch-size", o.batch_size, "images per batch")
      ->capture_default_str()
      ->check(integer_in(2, 65536));
  add_enum_option(t, "--optimizer", o.optimizer, "the optimizer");
  t->add_option("--lr", o.lr, "peak learning rate")
      ->capture_default_str()
      ->check(real_in(0, 1000, true));
  t->add_option("--momentum", o.momentum, "SGD momentum")
      ->capture_default_str()
      ->check(real_in(0, 1, false, true));
  t->add_option("--nesterov", o.nesterov, "Nesterov momentum (true/false)")->capture_default_str();
  t->add_option("--weight-decay", o.weight_decay,
                "L2 (sgd, adam) or decoupled (adamw) weight decay, trainable parameters only")
      ->capture_default_str()
      ->check(real_in(0, 1));
  add_enum_option(t, "--schedule", o.schedule, "learning-rate schedule, stepped per batch");
  t->add_option("--warmup", o.warmup_epochs, "linear warm-up in epochs (-1: 15% of the run)")
      ->capture_default_str()
      ->check(real_in(-1, kEpochs));
  t->add_option("--milestones", o.milestones, "multistep: epochs where lr *= gamma")
      ->check(real_in(0, kEpochs));
  t->add_option("--gamma", o.gamma, "multistep factor")
      ->capture_default_str()
      ->check(real_in(0, 10, true));
  t->add_option("--label-smoothing", o.label_smoothing, "cross-entropy label smoothing")
      ->capture_default_str()
      ->check(real_in(0, 1, false, true));
  t->add_option("--augment", o.augment, "random crop (pad 4) + horizontal flip (true/false)")
      ->capture_default_str();
  t->add_option("--seed", o.seed, "seed of init, shuffling and augmentation")
      ->capture_default_str()
      ->check(integer_in(0, std::numeric_limits<long long>::max()));
  t->add_option("--threads", o.threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  t->add_option("--limit-train", o.limit_train, "train on the first N images")
      ->check(integer_in(1, 50000));
  t->add_option("--limit-test", o.limit_test, "evaluate on the first N test images")
      ->check(integer_in(1, 10000));
  t->add_option("--out", o.out, "RUN_DIR for metrics.csv, config.json, model.safetensors")
      ->capture_default_str();
  t->add_option("--resume", a->resume, "continue the run in RUN_DIR (its config.json)");
  t->add_option("--stop-after", a->stop_after,
                "stop after N epochs of this invocation (the schedule still spans --epochs; "
                "continue with --resume)")
      ->check(integer_in(1, kEpochs));
  t->add_option("--normalize", o.normalize,
                "input normalization: cifar10 (its own mean/std) | imagenet (torchvision's "
                "ImageNet mean/std, as the BN-only paper's code)")
      ->capture_default_str()
      ->check(CLI::IsMember(data::normalization_names()));
  add_enum_option(t, "--norm", o.norm,
                  "the normalization layer of the resnet<D>[_<W>] models (every other model: bn "
                  "only)");
  t->add_option("--gn-groups", o.gn_groups,
                "--norm gn: GroupNorm's groups; a layer of C channels takes min(G, C), which "
                "must divide C")
      ->capture_default_str()
      ->check(integer_in(1, 65536));
  add_enum_option(t, "--bn-init", o.bn_init,
                  "gamma init of the normalization layers (BatchNorm, or GroupNorm with --norm gn "
                  "or ln)");
  add_enum_option(t, "--train-only", o.train_only,
                  "which parameters learn (freezes the rest: no gradient, no decay)");
  add_enum_option(t, "--bn-stats", o.bn_stats,
                  "BN statistics while training (freezes statistics, not parameters)");
  add_enum_option(t, "--recipe", a->recipe,
                  "the recipe; airbench94 fixes model, optimizer, schedule and augmentation and "
                  "takes only --data, --seed, --tta, --out, --threads, --epochs, --batch-size, "
                  "--limit-train, --limit-test, --eval-every-epoch")
      ->check(CLI::IsMember(std::vector<std::string>{"default", "airbench94"}));
  t->add_option("--tta", a->tta,
                "airbench94: test-time augmentation of the final evaluation: 0 none | 1 mirror | 2 "
                "mirror and one-pixel translations")
      ->capture_default_str()
      ->check(integer_in(0, 2));
  t->add_flag("--eval-every-epoch", a->eval_every_epoch,
              "airbench94: also evaluate on the test set (no TTA) after every epoch, not only "
              "after the last (10 more test passes in the wall time)");
  add_enum_option(t, "--bn-sync", o.bn_sync,
                  "data parallelism (mpirun -np N): BatchNorm statistics per process or over the "
                  "global batch");
  t->add_option("--bn-group-size", o.bn_group_size,
                "ghost batches: BatchNorm statistics per group of G consecutive images of each "
                "batch (the last group smaller if G does not divide it); 0: the whole batch")
      ->capture_default_str()
      ->check(integer_in(0, 65536));
  t->add_flag("--bn-renorm", o.bn_renorm,
              "Batch Renormalization (Ioffe 2017) in every BatchNorm while training: r and d "
              "correct the batch statistics toward the running ones (freezes nothing)");
  t->add_option("--renorm-r-max", o.renorm_r_max, "Batch Renorm: r_max after the ramp")
      ->capture_default_str()
      ->check(real_in(1, 1e6));
  t->add_option("--renorm-d-max", o.renorm_d_max, "Batch Renorm: d_max after the ramp")
      ->capture_default_str()
      ->check(real_in(0, 1e6));
  t->add_option_function<std::vector<double>>(
       "--renorm-ramp",
       [a](const std::vector<double>& v) {
         a->o.renorm_ramp_start = v[0];
         a->o.renorm_ramp_end = v[1];
       },
       "Batch Renorm: r_max = 1 and d_max = 0 until START, then linear to the maxima at END "
       "(fractions of the run's steps; default 0.05 0.5)")
      ->expected(2)
      ->type_name("START END")
      ->check(real_in(0, 1));
  add_enum_option(t, "--allreduce", o.reduction,
                  "data parallelism: how gradients are summed over the processes");
  t->add_flag("--profile", a->profile,
              "print a per-op time table (calls, ms, % and GFLOP/s per op and pass) of the first "
              "epoch's training loop, evaluation excluded");
  return {t, [a, t] { run(*a, t); }};
}

}  // namespace minidl::app
