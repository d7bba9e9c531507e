// minidl train — the flags of a training run, mapped onto train::TrainOptions, and the printing
// of its progress (the Trainer's callbacks). The run itself is train::Trainer's.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "apps/console_log.hpp"
#include "apps/progress.hpp"
#include "core/system.hpp"
#include "dist/process_group.hpp"
#include "train/trainer.hpp"

namespace minidl::app {

namespace {

using Clock = std::chrono::steady_clock;

/// The train command's flags beyond TrainOptions.
struct TrainArgs {
  train::TrainOptions o;
  std::string resume;
  bool overwrite = false;
  int64_t stop_after = -1;
  bool profile = false;
  int tta = 0;  ///< --tta when given (airbench94's preset has 2)
  bool eval_every_epoch = false;
  train::Recipe recipe = train::Recipe::kDefault;
  std::string resume_note;  ///< resumed_options' line on an extended run, printed by run()
};

/// The run's estimated time left (this invocation, to its last epoch or --stop-after): the
/// steps left at the seconds per step measured so far, plus the test passes left at the seconds
/// per pass measured so far (before the first one: a third of a training step per image, as a
/// forward pass is about a third of a step). A TTA pass counts as many passes as its views.
struct RunClock {
  // The run, from FitStart.
  int64_t epochs = 0, end_epoch = 0, per_epoch = 0, total_steps = 0, first_step = 0;
  int64_t batch_size = 1, test_images = 0;
  bool eval_every_epoch = true;
  int tta = 0;
  // Measured.
  double train_seconds = 0;  // finished epochs' training loops (this invocation)
  double eval_seconds = 0;   // finished test passes
  double eval_passes = 0;    // ... in passes of the test set without TTA
  // Now.
  int64_t epoch = 0, step = 0;
  bool epoch_evaluated = false, tta_done = false, evaluating = false;
  int pass_tta = 0;
  double pass_fraction = 0;  // of the test pass under way
  Clock::time_point phase_start;

  static int views(int level) { return level == 0 ? 1 : level == 1 ? 2 : 6; }
  bool evaluates(int64_t e) const {
    return test_images > 0 && (eval_every_epoch || e + 1 == epochs);
  }

  /// Seconds left, or a negative number while nothing is measured yet.
  double seconds_left() const {
    const double phase = std::chrono::duration<double>(Clock::now() - phase_start).count();
    const int64_t steps = step - first_step;
    if (steps <= 0) return -1;
    const double per_step = (train_seconds + (evaluating ? 0.0 : phase)) / steps;
    const int64_t steps_end = std::min(total_steps, end_epoch * per_epoch);
    const double per_pass = eval_passes > 0
                                ? eval_seconds / eval_passes
                                : per_step / 3 * test_images / static_cast<double>(batch_size);
    double passes = 0;
    for (int64_t e = epoch; e < end_epoch; ++e)
      passes += evaluates(e) && !(e == epoch && epoch_evaluated) ? 1 : 0;
    if (end_epoch == epochs && tta > 0 && test_images > 0 && !tta_done) passes += views(tta);
    if (evaluating) passes -= pass_fraction * views(pass_tta);
    return std::max<int64_t>(0, steps_end - step) * per_step + std::max(0.0, passes) * per_pass;
  }
  std::string eta() const {
    const double left = seconds_left();
    return left < 0 ? "ETA --" : "ETA " + format_duration(left);
  }
};

/// `format` (one printf conversion of a double) applied to `v`.
std::string number_text(const char* format, double v) {
  char b[64];
  std::snprintf(b, sizeof b, format, v);
  return b;
}

/// The header's data line of the default and bn-speedrun recipes: images, epochs and batches.
void print_data_line(const train::FitStart& f, const train::TrainOptions& o) {
  std::printf("  data: %s train / %s test images; %s of %s of %s images\n",
              with_thousands(f.train_images).c_str(), with_thousands(f.test_images).c_str(),
              count_text(f.epochs, "epoch").c_str(),
              count_text(f.batches_per_epoch, "batch", "batches").c_str(),
              with_thousands(o.batch_size).c_str());
}

/// `prefix` and o.tta when the run ends with a TTA pass, else "" (so that a run without --tta
/// prints the lines it always printed).
std::string tta_note(const train::TrainOptions& o, const std::string& prefix) {
  return o.tta > 0 ? prefix + std::to_string(o.tta) : "";
}

/// The start-up lines: what is trained, on what, how, and where (each line under 100 columns
/// but for long model names and paths).
void print_header(const train::FitStart& f, const train::TrainOptions& o) {
  if (o.recipe == train::Recipe::kAirbench94) {
    std::printf("minidl train --recipe airbench94: %s parameters, %s\n",
                with_thousands(f.parameters).c_str(), count_text(o.threads, "thread").c_str());
    std::printf("  data: %s train / %s test images; %g epochs = %s of %s images\n",
                with_thousands(f.train_images).c_str(), with_thousands(f.test_images).c_str(),
                o.epochs, count_text(f.total_steps, "step").c_str(),
                with_thousands(o.batch_size).c_str());
    std::printf("  sgd nesterov, lr %.4g (BN biases x%g); run folder %s\n", o.lr,
                o.bn_bias_lr_scale, o.out.c_str());
  } else if (o.recipe == train::Recipe::kBnSpeedrun) {
    std::printf("minidl train --recipe bn-speedrun: %s, %s parameters, %s trainable, %s\n",
                o.model.c_str(), with_thousands(f.parameters).c_str(),
                with_thousands(f.trainable).c_str(), count_text(o.threads, "thread").c_str());
    print_data_line(f, o);
    std::printf("  %s, lr %g, schedule %s; weight decay %g, label smoothing %g, augmentation %s\n",
                name_of(o.optimizer).c_str(), o.lr, name_of(o.schedule).c_str(), o.weight_decay,
                o.label_smoothing, o.augment ? "on" : "off");
    std::printf("  --train-only %s%s; test set evaluated %s%s; run folder %s\n",
                name_of(o.train_only).c_str(), o.stem_whitening ? ", --stem-whitening" : "",
                o.eval_every_epoch ? "after every epoch" : "after the last epoch",
                tta_note(o, ", then with TTA level ").c_str(), o.out.c_str());
  } else {
    std::string model = o.model;  // with its normalization when not BatchNorm
    if (o.norm == NormKind::kGroup)
      model += " --norm gn --gn-groups " + std::to_string(o.gn_groups);
    else if (o.norm != NormKind::kBatch)
      model += " --norm " + name_of(o.norm);
    if (o.stem_whitening) model += " --stem-whitening";
    std::printf("minidl train: %s, %s parameters, %s trainable (--train-only %s), %s\n",
                model.c_str(), with_thousands(f.parameters).c_str(),
                with_thousands(f.trainable).c_str(), name_of(o.train_only).c_str(),
                count_text(o.threads, "thread").c_str());
    print_data_line(f, o);
    std::printf("  %s, lr %g, schedule %s; BN statistics: %s%s; run folder %s\n",
                name_of(o.optimizer).c_str(), o.lr, name_of(o.schedule).c_str(),
                name_of(o.bn_stats).c_str(),
                tta_note(o, "; final test also with TTA level ").c_str(), o.out.c_str());
  }
  if (f.world_size > 1) {
    std::printf("  data-parallel: %d processes, global batch %lld, BatchNorm statistics %s\n",
                f.world_size, static_cast<long long>(o.batch_size),
                o.bn_sync == train::BnSync::kNone
                    ? "per process"
                    : ("synchronized (" + name_of(o.bn_sync) + ")").c_str());
  }
  if (f.start_epoch > 0) {
    std::printf("  resumed after epoch %lld of %lld\n", static_cast<long long>(f.start_epoch),
                static_cast<long long>(f.epochs));
  }
  std::fflush(stdout);
}

/// Printing, the progress line (on a terminal) and --profile as Trainer callbacks.
train::Callbacks console(const TrainArgs& a, const train::TrainOptions& o) {
  struct State {
    Clock::time_point last_draw;
    std::unique_ptr<ProfileWindow> profile;
    int64_t first_epoch = -1;
    int world = 1;
    RunClock clock;
    /// "epoch 3/30" with the epoch count's width, so that the line does not shift.
    std::string epoch_label() const {
      const int w = static_cast<int>(std::to_string(clock.epochs).size());
      char b[64];
      std::snprintf(b, sizeof b, "epoch %*lld/%lld", w, static_cast<long long>(clock.epoch + 1),
                    static_cast<long long>(clock.epochs));
      return b;
    }
    /// Whether to redraw now: the first and last batch of a phase, else at most 10 times a second.
    bool due(bool edge) {
      const auto now = Clock::now();
      if (!edge && now - last_draw < std::chrono::milliseconds(100)) return false;
      last_draw = now;
      return true;
    }
    double phase_seconds() const {
      return std::chrono::duration<double>(Clock::now() - clock.phase_start).count();
    }
  };
  auto st = std::make_shared<State>();
  const bool bar = progress_enabled();
  train::Callbacks cb;
  cb.on_fit_start = [&o, st](const train::FitStart& f) {
    st->first_epoch = f.start_epoch;
    st->world = f.world_size;
    RunClock& c = st->clock;
    c.epochs = f.epochs;
    c.end_epoch = f.end_epoch;
    c.per_epoch = f.batches_per_epoch;
    c.total_steps = f.total_steps;
    c.first_step = c.step = std::min(f.total_steps, f.start_epoch * f.batches_per_epoch);
    c.batch_size = o.batch_size;
    c.test_images = f.test_images;
    c.eval_every_epoch = o.eval_every_epoch;
    c.tta = o.tta;
    print_header(f, o);
  };
  cb.on_epoch_start = [st, profile = a.profile](int64_t epoch) {
    st->clock.epoch = epoch;
    st->clock.epoch_evaluated = false;
    st->clock.phase_start = Clock::now();
    // --profile: the first epoch of this invocation, training loop only.
    if (profile && epoch == st->first_epoch) st->profile = std::make_unique<ProfileWindow>(true);
  };
  if (bar) {
    cb.on_batch_end = [st](const train::BatchProgress& p) {
      st->clock.step = p.step;
      if (!st->due(p.batch == 1 || p.batch == p.batches)) return;
      const double secs = st->phase_seconds();
      const int64_t rate = secs > 0 ? std::llround(p.images * st->world / secs) : 0;
      draw_progress(progress_text(st->epoch_label() + " train",
                                  static_cast<double>(p.batch) / p.batches,
                                  {{0, progress_count(p.batch, p.batches)},
                                   {2, number_text("loss %.4f", p.loss)},
                                   {3, number_text("acc %5.2f%%", 100 * p.accuracy)},
                                   {4, number_text("lr %.3e", p.lr)},
                                   {5, with_thousands(rate) + " img/s"},
                                   {1, st->clock.eta()}}));
    };
    cb.on_evaluate_start = [st](const train::EvaluateStart& e) {
      RunClock& c = st->clock;
      c.evaluating = true;
      c.pass_tta = e.tta;
      c.pass_fraction = 0;
      c.phase_start = Clock::now();
    };
    cb.on_evaluate_batch = [st](const train::EvalProgress& p) {
      RunClock& c = st->clock;
      const bool first = c.pass_fraction == 0;
      c.pass_fraction = p.total > 0 ? static_cast<double>(p.images) / p.total : 1.0;
      const bool last = p.images >= p.total;
      if (last) {  // the pass is over: its time per pass for the estimate
        c.eval_seconds += st->phase_seconds();
        c.eval_passes += RunClock::views(c.pass_tta);
        c.evaluating = false;
        (c.pass_tta == 0 ? c.epoch_evaluated : c.tta_done) = true;
      }
      if (!st->due(first || last)) return;
      const double secs = st->phase_seconds();
      const int64_t rate = secs > 0 ? std::llround(p.images * st->world / secs) : 0;
      const std::string label = c.pass_tta > 0 ? "final test, TTA " + std::to_string(c.pass_tta)
                                               : st->epoch_label() + " test ";
      draw_progress(progress_text(
          label, c.pass_fraction,
          {{0, progress_count(p.images, p.total)},
           {2, number_text("loss %.4f", p.loss)},
           {3, number_text("acc %5.2f%%", p.images ? 100.0 * p.correct / p.images : 0.0)},
           {5, with_thousands(rate) + " img/s"},
           {1, c.eta()}}));
    };
  }
  cb.on_train_epoch_end = [st](int64_t, const train::EpochStats& s) {
    st->clock.train_seconds += s.seconds;
    st->clock.phase_start = Clock::now();
    if (st->profile) st->profile->stop();
  };
  cb.on_epoch_end = [st](const train::EpochEnd& e) {
    print_epoch_line(e);  // clears the progress line first
    if (st->profile) {
      std::printf(
          "per-op profile of epoch %lld (%s, training loop %.3f s, evaluation excluded):\n%s",
          static_cast<long long>(e.row.epoch),
          count_text(e.train.batches, "batch", "batches").c_str(), e.train.seconds,
          profiler::table(e.train.seconds, e.train.batches).c_str());
      st->profile.reset();
    }
    std::fflush(stdout);
  };
  return cb;
}

/// Refuses every flag given that `recipe` does not take (`taken`, with --recipe and --help):
/// throws std::invalid_argument "--lr is fixed by --recipe NAME (it takes --data, ...)".
void refuse_fixed_flags(CLI::App* sub, train::Recipe recipe,
                        const std::vector<std::string>& taken) {
  for (CLI::Option* opt : sub->get_options()) {
    if (opt->count() == 0 || opt->get_name() == "--recipe" || opt->get_name() == "--help") continue;
    bool ok = false;
    for (const std::string& t : taken) ok = ok || opt->get_name() == t;
    if (ok) continue;
    std::string list;
    for (const std::string& t : taken) list += (list.empty() ? "" : ", ") + t;
    throw std::invalid_argument(opt->get_name() + " is fixed by --recipe " + name_of(recipe) +
                                " (it takes " + list + ")");
  }
}

/// The flags --recipe bn-speedrun takes: where and how long it runs and how its final test pass
/// is evaluated (--tta), never how it trains but the network, its length and the labelled
/// variants --train-only bn+fc and --stem-whitening (train::bn_speedrun_options).
const std::vector<std::string> kBnSpeedrunFlags = {
    "--data",       "--model",       "--epochs",     "--seed",
    "--threads",    "--out",         "--resume",     "--overwrite",
    "--stop-after", "--limit-train", "--limit-test", "--eval-every-epoch",
    "--tta",        "--profile",     "--train-only", "--stem-whitening"};

/// The flags --recipe airbench94 takes besides --recipe (it fixes every other setting).
const char* const kAirbench94Flags[] = {
    "--data",     "--seed",       "--tta",         "--out",        "--threads",
    "--epochs",   "--batch-size", "--limit-train", "--limit-test", "--eval-every-epoch",
    "--overwrite"};

/// "--data, --model, ..." (kBnSpeedrunFlags).
std::string bn_speedrun_flags() {
  std::string list;
  for (const std::string& t : kBnSpeedrunFlags) list += (list.empty() ? "" : ", ") + t;
  return list;
}

/// "--data, --seed, ..." (kAirbench94Flags).
std::string airbench94_flags() {
  std::string list;
  for (const char* t : kAirbench94Flags) list += (list.empty() ? "" : ", ") + std::string(t);
  return list;
}

/// The options the flags give for a new run: the default recipe with every flag applied, or
/// airbench94's or bn-speedrun's preset with the flags it takes.
train::TrainOptions options_from_flags(const TrainArgs& a, CLI::App* sub) {
  auto given = [sub](const char* flag) { return sub->get_option(flag)->count() > 0; };
  train::TrainOptions o = a.o;
  if (a.recipe == train::Recipe::kAirbench94) {
    refuse_fixed_flags(
        sub, a.recipe,
        std::vector<std::string>(std::begin(kAirbench94Flags), std::end(kAirbench94Flags)));
    o = train::airbench94_options(given("--batch-size") ? a.o.batch_size : 1024,
                                  given("--epochs") ? a.o.epochs : 9.9);
    o.data = a.o.data;
    o.seed = a.o.seed;
    o.threads = a.o.threads;
    o.limit_train = a.o.limit_train;
    o.limit_test = a.o.limit_test;
    if (given("--out")) o.out = a.o.out;
    if (given("--tta")) o.tta = a.tta;  // else the preset's 2
    o.eval_every_epoch = a.eval_every_epoch;
  } else if (a.recipe == train::Recipe::kBnSpeedrun) {
    refuse_fixed_flags(sub, a.recipe, kBnSpeedrunFlags);
    o = train::bn_speedrun_options();
    if (given("--model")) o.model = a.o.model;
    if (given("--epochs")) o.epochs = a.o.epochs;
    if (given("--out")) o.out = a.o.out;
    if (given("--eval-every-epoch")) o.eval_every_epoch = true;
    if (given("--train-only")) {
      if (a.o.train_only != optim::TrainOnly::kBn && a.o.train_only != optim::TrainOnly::kBnFc)
        throw std::invalid_argument(
            "--train-only: --recipe bn-speedrun trains BatchNorm only (bn) or, as its labelled "
            "variant, BatchNorm and the output layer (bn+fc); got " +
            name_of(a.o.train_only));
      o.train_only = a.o.train_only;
    }
    o.stem_whitening = a.o.stem_whitening;
    o.tta = a.tta;
    o.data = a.o.data;
    o.seed = a.o.seed;
    o.threads = a.o.threads;
    o.limit_train = a.o.limit_train;
    o.limit_test = a.o.limit_test;
  } else {
    o.tta = a.tta;
    if (given("--eval-every-epoch"))
      throw std::invalid_argument(
          "--eval-every-epoch is for --recipe airbench94 and --recipe bn-speedrun (the default "
          "recipe evaluates after every epoch)");
  }
  return o;
}

/// The config.json keys a flag sets ("--warmup" -> warmup_epochs).
std::vector<std::string> config_keys_of(const std::string& flag) {
  if (flag == "--warmup") return {"warmup_epochs"};
  if (flag == "--allreduce") return {"reduction"};
  if (flag == "--renorm-ramp") return {"renorm_ramp_start", "renorm_ramp_end"};
  std::string key = flag.substr(2);
  for (char& c : key) c = c == '-' ? '_' : c;
  return {key};
}

/// The flags --resume takes besides the run's own settings: they change how it runs, not what.
const char* const kResumeMayChange[] = {"--resume", "--stop-after", "--threads", "--epochs",
                                        "--data",   "--profile",    "--out",     "--help"};

/// The options of the run in a.resume: its config.json, with --threads, --data and --epochs
/// (extending a run whose schedule allows it) applied. Every other flag given must equal the
/// saved value: a flag that differs is refused naming both values. Sets a.resume_note, the line
/// to print, when --epochs changes the run's length.
train::TrainOptions resumed_options(TrainArgs& a, CLI::App* sub, const train::TrainOptions& flags) {
  auto given = [sub](const char* flag) { return sub->get_option(flag)->count() > 0; };
  const std::string config = a.resume + "/config.json";
  train::TrainOptions saved;
  try {
    saved = train::read_config(config);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("--resume: ") + e.what());
  }
  if (given("--out") && a.o.out != a.resume) {
    throw std::invalid_argument("--out " + a.o.out + ": --resume continues the run in its own " +
                                "folder, " + a.resume + " (give --resume alone)");
  }
  std::string may_change;
  for (const char* f : kResumeMayChange) {
    const std::string flag = f;
    if (flag != "--resume" && flag != "--help" && flag != "--out" && flag != "--profile")
      may_change += (may_change.empty() ? "" : ", ") + flag;
  }
  const std::vector<train::ConfigDifference> differences = train::config_differences(saved, flags);
  for (CLI::Option* opt : sub->get_options()) {
    if (opt->count() == 0) continue;
    const std::string flag = opt->get_name();
    bool free = false;
    for (const char* f : kResumeMayChange) free = free || flag == f;
    if (free) continue;
    for (const std::string& key : config_keys_of(flag)) {
      for (const train::ConfigDifference& d : differences) {
        if (d.key != key) continue;
        throw std::invalid_argument(flag + " " + d.given + ": the run in " + a.resume +
                                    " was trained with " + key + " " + d.saved +
                                    " (its config.json); a resumed run keeps its settings (only " +
                                    may_change + " may be given with --resume)");
      }
    }
  }
  train::TrainOptions o = saved;
  o.out = a.resume;
  if (given("--threads")) o.threads = a.o.threads;  // else the run's: the order of sums
  if (given("--data")) o.data = a.o.data;
  if (given("--epochs") && flags.epochs != saved.epochs) {
    const std::string wanted = "--epochs " + std::to_string(static_cast<int64_t>(flags.epochs));
    const std::string planned = std::to_string(static_cast<int64_t>(saved.epochs));
    if (train::schedule_depends_on_length(saved)) {
      throw std::invalid_argument(
          wanted + ": the run in " + a.resume + " was planned for " +
          count_text(saved.epochs, "epoch") +
          " and its learning rate follows that length (schedule " + name_of(saved.schedule) +
          (saved.warmup_epochs < 0 ? ", warm-up 15% of the run" : "") +
          "), so another length would change the epochs already trained; resume it with "
          "--epochs " +
          planned + " or start a new run");
    }
    if (flags.epochs < saved.epochs) {
      throw std::invalid_argument(wanted + ": the run in " + a.resume + " is planned for " +
                                  count_text(saved.epochs, "epoch") +
                                  "; a resumed run can only be extended (stop "
                                  "it earlier with --stop-after)");
    }
    a.resume_note = "resuming " + a.resume + " with " + wanted + ": the run is extended from " +
                    count_text(saved.epochs, "epoch") + " to " + count_text(flags.epochs, "epoch") +
                    " (its " + name_of(saved.schedule) +
                    " schedule does not depend on the run's length, so the epochs already "
                    "trained stay as they were)";
    o.epochs = flags.epochs;
  }
  return o;
}

// ---- SIGINT and SIGTERM: one line saying which checkpoint is kept ---------------------------

/// What the handler prints, kept current by the Trainer's commit callbacks: two buffers, the
/// handler reads the one `g_line` names (the other is being rewritten).
char g_lines[2][1024];
std::atomic<int> g_line{0};
volatile std::sig_atomic_t g_in_commit = 0, g_pending = 0;
bool g_terminal = false;  // stderr is a terminal: the progress line may be on screen

void set_stop_line(const std::string& text) {
  const int next = 1 - g_line.load();
  std::snprintf(g_lines[next], sizeof g_lines[next], "%s", text.c_str());
  g_line.store(next);
}

/// Prints the line and ends the process by the signal, as it would have ended without the
/// handler (async-signal-safe: write, signal, raise). On a terminal the line replaces the
/// progress line (and the "^C" the terminal echoed).
void stop_by(int sig) {
  const char* name =
      sig == SIGINT ? "minidl: interrupted (SIGINT); " : "minidl: stopped (SIGTERM); ";
  const char* line = g_lines[g_line.load()];
  size_t n = 0;
  while (line[n]) ++n;
  ssize_t ignored = 0;
  if (g_terminal) ignored = ::write(STDERR_FILENO, kEraseLine, std::strlen(kEraseLine));
  ignored = ::write(STDERR_FILENO, name, std::strlen(name));
  ignored = ::write(STDERR_FILENO, line, n);
  (void)ignored;
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

extern "C" void on_stop_signal(int sig) {
  if (g_in_commit) {
    g_pending = sig;  // the files being written are finished first
    return;
  }
  stop_by(sig);
}

/// The kept-checkpoint line for `epoch` (0: none yet).
std::string kept_line(const train::TrainOptions& o, int64_t epoch) {
  if (epoch > 0) {
    return "kept: the checkpoint of epoch " + std::to_string(epoch) + " in " + o.out +
           "/model.safetensors, every file whole (continue with --resume " + o.out + ")\n";
  }
  return std::string("no checkpoint of this run was written") +
         (o.resumable ? " (no epoch finished)" : " (this recipe writes it after its last epoch)") +
         "; the files in " + o.out + " are whole\n";
}

/// Installs the handler on SIGINT and SIGTERM and adds the commit callbacks that keep its line
/// current and hold a signal while files are written.
void stop_with_kept_line(train::Callbacks& cb, const train::TrainOptions& o) {
  set_stop_line(kept_line(o, 0));
  g_terminal = progress_enabled();
  auto fit_start = cb.on_fit_start;
  cb.on_fit_start = [fit_start, &o](const train::FitStart& f) {
    set_stop_line(kept_line(o, o.resumable ? f.start_epoch : 0));
    if (fit_start) fit_start(f);
  };
  cb.on_commit_start = [] { g_in_commit = 1; };
  cb.on_commit_end = [&o](int64_t saved_epoch) {
    if (saved_epoch > 0) set_stop_line(kept_line(o, saved_epoch));
    g_in_commit = 0;
    if (g_pending) stop_by(g_pending);
  };
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;  // a second signal ends the process at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

/// Checks the flags and returns the run's options (from the flags, or the run's config.json
/// with --resume). Throws std::invalid_argument naming the flag.
train::TrainOptions checked_options(TrainArgs& a, CLI::App* sub) {
  auto given = [sub](const char* flag) { return sub->get_option(flag)->count() > 0; };
  if (given("--resume") && a.resume.empty())
    throw std::invalid_argument("--resume: give the run directory (got an empty path)");
  if (given("--out") && a.o.out.empty())
    throw std::invalid_argument("--out: give a folder for the run (got an empty path)");
  if (given("--resume") && a.overwrite)
    throw std::invalid_argument("--overwrite replaces a run, --resume continues it: give one");
  if (a.overwrite && !given("--out")) {
    throw std::invalid_argument(
        "--overwrite replaces the run in --out; without --out every run gets a new folder "
        "(give the folder to replace with --out)");
  }
  train::TrainOptions o = options_from_flags(a, sub);
  if (given("--resume")) o = resumed_options(a, sub, o);
  o.data = resolve_data_dir(o.data);
  train::validate(o);
  return o;
}

/// bn-speedrun's last two lines: the accuracy (with --tta, with and without TTA; or, for a run
/// stopped before its last epoch, where it stands: the recipe evaluates after the last epoch
/// only) and the wall time of this invocation in minutes, split into the training loops, the
/// test passes (the TTA pass included) and the rest (loading the data, building the model,
/// writing the run directory).
void print_bn_speedrun_end(const train::TrainOptions& o, const train::RunResult& r, bool resumed) {
  const std::string ck = o.out + "/model.safetensors";
  const long long done = r.epochs_done, epochs = static_cast<long long>(std::ceil(o.epochs));
  if (r.finished && o.tta > 0) {
    std::printf(
        "done: test accuracy %.2f%% with TTA level %d, %.2f%% without, after %lld of %lld "
        "epochs; checkpoint %s\n",
        100 * r.test_accuracy_tta, o.tta, 100 * r.test_accuracy, done, epochs, ck.c_str());
  } else if (r.finished || o.eval_every_epoch) {
    std::printf("done: test accuracy %.2f%% after %lld of %lld epochs; checkpoint %s\n",
                100 * r.test_accuracy, done, epochs, ck.c_str());
  } else {
    std::printf(
        "stopped after %lld of %lld epochs, not evaluated (the recipe evaluates the test set "
        "after the last epoch); continue with --resume %s\n",
        done, epochs, o.out.c_str());
  }
  const double other = std::max(0.0, r.total_seconds - r.train_seconds - r.eval_seconds);
  std::printf("wall time %.1f min%s: training %.1f min, evaluation %.1f min, other %.1f min\n",
              r.total_seconds / 60, resumed ? " (this invocation)" : "", r.train_seconds / 60,
              r.eval_seconds / 60, other / 60);
  std::fflush(stdout);
}

/// The trainer, its callbacks and the last lines of a run in o.out (train.log copied by
/// `console_log` when not null; plots drawn at the end). Library errors become messages naming
/// the flags.
void train_in(TrainArgs& a, const train::TrainOptions& o, bool resume,
              const std::shared_ptr<dist::ProcessGroup>& group, ConsoleLog* console_log) {
  const std::string where = (resume ? "--resume " : "--out ") + o.out + ": ";
  try {
    train::Callbacks cb = console(a, o);
    if (group->rank() == 0) stop_with_kept_line(cb, o);
    if (console_log) {  // train.log from the run's first commit on (appended when resumed)
      cb.on_commit_end = [end = cb.on_commit_end, console_log, resume](int64_t saved_epoch) {
        console_log->open(resume);
        if (end) end(saved_epoch);
      };
    }
    train::Trainer trainer(o, cb);
    trainer.set_process_group(group);
    trainer.set_existing_run(a.overwrite ? train::ExistingRun::kReplace
                                         : train::ExistingRun::kRefuse);
    const train::RunResult r = trainer.fit(resume, a.stop_after);
    const std::string ck = o.out + "/model.safetensors";
    if (group->rank() != 0) return;
    clear_progress();  // the final test pass's
    if (o.recipe == train::Recipe::kBnSpeedrun) {
      print_bn_speedrun_end(o, r, resume);
    } else if (o.tta > 0 && r.finished) {  // airbench94, or any recipe given --tta
      std::printf(
          "done: test accuracy %.2f%% with TTA level %d, %.2f%% without; wall time %s (training "
          "%s, evaluation %s); checkpoint %s\n",
          100 * r.test_accuracy_tta, o.tta, 100 * r.test_accuracy,
          format_duration(r.total_seconds).c_str(), format_duration(r.train_seconds).c_str(),
          format_duration(r.eval_seconds).c_str(), ck.c_str());
    } else {
      std::printf("done: test accuracy %.2f%% after %s in %s; checkpoint %s\n",
                  100 * r.test_accuracy, count_text(r.epochs_done, "epoch").c_str(),
                  format_duration(r.total_seconds).c_str(), ck.c_str());
    }
    std::fflush(stdout);
    // The curves: a warning line when they cannot be drawn, never a failed run.
    if (plot_run(o.out, false))
      std::printf("plots: %s/accuracy.png, %s/loss.png\n", o.out.c_str(), o.out.c_str());
    std::fflush(stdout);
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
  } catch (const train::RunInUse& e) {
    throw std::runtime_error(where + e.what() +
                             "; two runs cannot share a folder: wait for it to end or choose "
                             "another --out");
  } catch (const train::RunExists& e) {
    throw std::runtime_error(where + e.what() + ": continue it with --resume " + o.out +
                             ", replace it with --overwrite, or choose another --out");
  }
}

/// Runs the parsed command: the options, the run folder (without --out: a new one, runs/<model>-
/// <time>), its path as the first line, then the run, with the console copied to train.log.
void run(TrainArgs& a, CLI::App* sub) {
  const bool resume = sub->get_option("--resume")->count() > 0;
  train::TrainOptions o = checked_options(a, sub);
  // Under mpirun every process runs this; rank 0 alone prints and writes.
  const std::shared_ptr<dist::ProcessGroup> group = dist::default_group();
  const bool rank0 = group->rank() == 0;
  const bool new_folder = !resume && sub->get_option("--out")->count() == 0;
  const char* const parent = "runs";
  std::error_code ec;
  const bool had_parent = std::filesystem::exists(parent, ec);
  if (new_folder) o.out = rank0 ? train::create_run_dir(parent, o.model, std::time(nullptr)) : "";
  std::unique_ptr<ConsoleLog> console_log;
  if (rank0) {
    console_log = std::make_unique<ConsoleLog>(o.out + "/train.log");
    std::printf("run folder: %s\n", o.out.c_str());
    if (!a.resume_note.empty()) std::printf("%s\n", a.resume_note.c_str());
    std::fflush(stdout);
  }
  try {
    train_in(a, o, resume, group, console_log.get());
  } catch (const std::exception& e) {
    if (console_log) console_log->log_only("minidl: error: " + with_flag_names(e.what()));
    console_log.reset();
    // A folder made for this run that holds no run yet goes again (it held only run.lock), and
    // runs/ with it when this run made it.
    if (new_folder && rank0 && train::run_files(o.out).empty()) {
      std::filesystem::remove(o.out + "/run.lock", ec);
      std::filesystem::remove(o.out, ec);  // only if empty
      if (!had_parent) std::filesystem::remove(parent, ec);
    }
    throw;
  }
}

}  // namespace

void print_epoch_line(const train::EpochEnd& e) {
  clear_progress();
  // Fixed widths, so that the numbers of successive epochs line up.
  char loss[16] = "     -", acc[16] = "     - ";
  if (e.test) {
    std::snprintf(loss, sizeof loss, "%6.4f", e.test->loss);
    std::snprintf(acc, sizeof acc, "%6.2f%%", 100 * e.test->accuracy());
  }
  const int w = static_cast<int>(std::to_string(e.epochs).size());
  std::printf(
      "epoch %*lld/%lld  train loss %6.4f acc %6.2f%%  test loss %s acc %s  lr %.3e  %5.1fs  "
      "%4.0f img/s\n",
      w, static_cast<long long>(e.row.epoch), static_cast<long long>(e.epochs), e.row.train_loss,
      100 * e.row.train_accuracy, loss, acc, e.row.lr, e.row.seconds, e.row.images_per_second);
  std::fflush(stdout);
}

Command add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  train::TrainOptions& o = a->o;
  const long long kEpochs = 100000;
  auto* t = app.add_subcommand("train", "train a model on CIFAR-10 and write a run folder");
  t->add_option("--data", o.data,
                "the CIFAR-10 binary folder (cifar-10-batches-bin); $MINIDL_DATA when not given")
      ->type_name("DIR");
  t->add_option("--model", o.model,
                "the model: resnet<D>[_<W>] (e.g. resnet20, resnet14_64), "
                "vgg11[_bn|_noisybn][_w<k>] (e.g. vgg11_bn_w4), airbench94 or cnn")
      ->type_name("NAME")
      ->capture_default_str();
  t->add_option_function<int64_t>(
       "--epochs", [&o](int64_t e) { o.epochs = static_cast<double>(e); },
       "epochs to train (airbench94: 9.9)")
      ->default_str(std::to_string(static_cast<int64_t>(o.epochs)))
      ->check(integer_in(1, kEpochs));
  t->add_option("--batch-size", o.batch_size, "images per batch (airbench94: 1024)")
      ->capture_default_str()
      ->check(integer_in(2, 65536));
  add_enum_option(t, "--optimizer", o.optimizer, "the optimizer");
  t->add_option("--lr", o.lr, "the peak learning rate")
      ->capture_default_str()
      ->check(real_in(0, 1000, true));
  t->add_option("--momentum", o.momentum, "SGD's momentum")
      ->capture_default_str()
      ->check(real_in(0, 1, false, true));
  t->add_option("--nesterov", o.nesterov, "whether SGD's momentum is Nesterov's")
      ->capture_default_str();
  t->add_option("--weight-decay", o.weight_decay,
                "L2 (sgd, adam) or decoupled (adamw) weight decay, of the trainable parameters "
                "only")
      ->capture_default_str()
      ->check(real_in(0, 1));
  add_enum_option(t, "--schedule", o.schedule,
                  "the learning-rate schedule, stepped after every batch",
                  {optim::ScheduleKind::kOneCycle, optim::ScheduleKind::kCosine,
                   optim::ScheduleKind::kMultistep, optim::ScheduleKind::kConstant});
  t->add_option("--warmup", o.warmup_epochs,
                "linear warm-up, in epochs (-1: 15% of the run; onecycle, cosine)")
      ->capture_default_str()
      ->check(real_in(-1, kEpochs));
  t->add_option("--milestones", o.milestones,
                "multistep: the epochs at which the learning rate is multiplied by --gamma")
      ->check(real_in(0, kEpochs));
  t->add_option("--gamma", o.gamma, "multistep: the factor at each milestone")
      ->capture_default_str()
      ->check(real_in(0, 10, true));
  t->add_option("--label-smoothing", o.label_smoothing, "the cross-entropy's label smoothing")
      ->capture_default_str()
      ->check(real_in(0, 1, false, true));
  t->add_option("--augment", o.augment,
                "whether to augment: random crop (padding 4) and horizontal flip")
      ->capture_default_str();
  t->add_option("--seed", o.seed, "the seed of the initial weights, shuffling and augmentation")
      ->capture_default_str()
      ->check(integer_in(0, std::numeric_limits<long long>::max()));
  t->add_option("--threads", o.threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  t->add_option("--limit-train", o.limit_train, "train on the first N training images only")
      ->check(integer_in(1, 50000));
  t->add_option("--limit-test", o.limit_test, "evaluate on the first N test images only")
      ->check(integer_in(1, 10000));
  t->add_option("--out", o.out,
                "the run folder: config.json, metrics.csv, model.safetensors... (default: a new "
                "folder runs/<model>-<YYYYmmdd-HHMMSS> for each run; a folder that holds a run is "
                "refused, but with --resume or --overwrite)")
      ->type_name("RUN_DIR");
  t->add_option("--resume", a->resume,
                "continue the run in RUN_DIR with its config.json. Other flags must match it, "
                "but --epochs (extending a constant or multistep schedule), --stop-after, "
                "--threads (default: the run's) and --data")
      ->type_name("RUN_DIR");
  t->add_flag("--overwrite", a->overwrite,
              "replace the run already in --out (refused without it; the old files are "
              "replaced at the new run's first epoch)");
  t->add_option("--stop-after", a->stop_after,
                "stop after N epochs of this invocation (the schedule still spans --epochs; "
                "continue with --resume)")
      ->check(integer_in(1, kEpochs));
  t->add_option("--normalize", o.normalize,
                "the input normalization: cifar10 (its own mean and std) or imagenet "
                "(torchvision's ImageNet mean and std, as the BN-only paper's code)")
      ->type_name("NAME")
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
                  "the initial gamma of the normalization layers (BatchNorm, or GroupNorm with "
                  "--norm gn or ln)");
  add_enum_option(t, "--train-only", o.train_only,
                  "which parameters learn; the others are frozen (no gradient, no decay)");
  t->add_flag("--stem-whitening", o.stem_whitening,
              "set the stem conv of a resnet<D>[_<W>] model from the first 5,000 training "
              "images before the first step: the W/2 leading principal components of their 3x3 "
              "patches at unit variance, and their negatives (data-derived: bn-speedrun's "
              "labelled variant). It still trains unless --train-only freezes it");
  add_enum_option(t, "--bn-stats", o.bn_stats,
                  "BN's statistics while training (freezes statistics, not parameters)");
  add_enum_option(
      t, "--recipe", a->recipe,
      "the recipe. airbench94 fixes the model, optimizer, schedule and augmentation "
      "and takes only " +
          airbench94_flags() +
          " (docs/recipes.md); bn-speedrun trains only BatchNorm (resnet110, 8 epochs, Adam lr "
          "0.1, "
          "batch 64) and takes only " +
          bn_speedrun_flags() + " (docs/recipes.md)",
      {train::Recipe::kDefault, train::Recipe::kAirbench94, train::Recipe::kBnSpeedrun});
  t->add_option("--tta", a->tta,
                "test-time augmentation of an extra test pass after the last epoch, reported "
                "beside the plain accuracy: 0 none, 1 mirror, 2 mirror and one-pixel "
                "translations (airbench94: 2)")
      ->capture_default_str()
      ->check(integer_in(0, 2));
  t->add_flag("--eval-every-epoch", a->eval_every_epoch,
              "airbench94, bn-speedrun: evaluate on the test set (without TTA) after every "
              "epoch, not only after the last (more test passes in the wall time)");
  add_enum_option(t, "--bn-sync", o.bn_sync,
                  "data parallelism (mpirun -np N): BatchNorm's statistics per process or over "
                  "the global batch");
  t->add_option("--bn-group-size", o.bn_group_size,
                "ghost batches: BatchNorm's statistics per group of G consecutive images of each "
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
  {
    char ramp[64];
    std::snprintf(ramp, sizeof ramp, "%g %g", o.renorm_ramp_start, o.renorm_ramp_end);
    t->add_option_function<std::vector<double>>(
         "--renorm-ramp",
         [a](const std::vector<double>& v) {
           a->o.renorm_ramp_start = v[0];
           a->o.renorm_ramp_end = v[1];
         },
         "Batch Renorm: r_max = 1 and d_max = 0 until START, then linear to the maxima at END "
         "(fractions of the run's steps)")
        ->expected(2)
        ->type_name("START END")
        ->default_str(ramp)
        ->check(real_in(0, 1));
  }
  add_enum_option(t, "--allreduce", o.reduction,
                  "data parallelism: how the gradients are summed over the processes");
  t->add_flag("--profile", a->profile,
              "print a table of each op's time (calls, ms, % and GFLOP/s per op and pass) in "
              "the first epoch's training loop, evaluation excluded");
  return {t, [a, t] { run(*a, t); }, [a, t] { checked_options(*a, t); }};
}

}  // namespace minidl::app
