// minidl — the CLI's shared pieces: flag validators, choice flags from enum tables, the mapping
// of library errors (which name parameters) to flags, the data folder, plots, durations.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/enum_names.hpp"
#include "core/profiler.hpp"
#include "optim/freeze.hpp"
#include "train/trainer.hpp"

namespace minidl::app {

/// One subcommand: its CLI11 App, what runs it once the flags are parsed, and (if set) what
/// checks the parsed flags without running anything (the fuzz harness of the command line).
struct Command {
  Command(CLI::App* app, std::function<void()> run, std::function<void()> check = {})
      : app(app), run(std::move(run)), check(std::move(check)) {}
  CLI::App* app = nullptr;
  std::function<void()> run;
  std::function<void()> check;
};

/// The subcommands (one file each: apps/cmd_<name>.cpp). Each declares its flags with their
/// validators next to them.
Command add_train(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_predict(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_bn_stats(CLI::App& app);
Command add_recalibrate(CLI::App& app);
Command add_experiment(CLI::App& app);
Command add_plot(CLI::App& app);

/// The whole command line on `app`: minidl's help layout (HelpFormatter) and every subcommand,
/// in the order `minidl --help` lists them (what main() and the command-line fuzzer parse).
std::vector<Command> add_commands(CLI::App& app);

/// minidl's help layout: a flag, its value's type once (NUMBER, INT, NAME, DIR, true|false...),
/// then its description as sentences followed by its range and its default, each once, wrapped
/// to 100 columns. A flag's old spelling (a second long name) is named as such.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter();
  std::string make_option_name(const CLI::Option* opt, bool is_positional) const override;
  std::string make_option_opts(const CLI::Option* opt) const override;
  std::string make_option_desc(const CLI::Option* opt) const override;
  std::string make_subcommand(const CLI::App* sub) const override;
  std::string make_description(const CLI::App* app) const override;
};

/// The one line minidl prints for a command-line error `e` of `app` (parsed as far as it got):
/// for an unknown flag, the flag and the nearest ones of its command ("unknown flag
/// --learning-rate for train; did you mean --lr?"), or the commands it belongs to ("--lr is for
/// landscape and covariate-shift, not bn-only"); for an unknown subcommand, the ones there are;
/// otherwise CLI11's own message.
std::string parse_error_message(const CLI::App& app, const CLI::ParseError& e);

/// The line after a command-line error: which --help to run ("Run minidl train --help for its
/// flags and their ranges.").
std::string help_hint(const CLI::App& app);

/// The flags of `app` nearest to `typed` (an unknown flag, e.g. "--learning-rate"), best first:
/// those it abbreviates or is the initials of ("--lr"), begins ("--limit" -> "--limit-test"),
/// or is within a few typing mistakes of (edit distance at most 1 per 4 characters, at least 1).
std::vector<std::string> nearest_flags(const CLI::App& app, const std::string& typed);

/// What `minidl --version` prints (apps/version.cpp), one "key: value" per line after the first:
/// "minidl <version> (git <hash>[-dirty], at configure time)", the build type, the BLAS
/// (OpenBLAS's own description), the SIMD width the build was compiled for, MPI built or not,
/// the compiler, and the folder of the plot scripts. No final newline.
std::string version_text();

/// The per-epoch line of `train` and `experiment bn-only` (apps/cmd_train.cpp): epoch, train
/// loss and accuracy, test loss and accuracy ("-" when not evaluated), lr, seconds, images/s.
void print_epoch_line(const train::EpochEnd& e);

/// A CLI11 check: an integer in [lo, hi], refused with the range in words
/// ("must be an integer from 1 to 256, got 0"). CLI11 prefixes the flag's name.
CLI::Validator integer_in(long long lo, long long hi);
/// A CLI11 check: a finite number between lo and hi (open at either end when asked); NaN and
/// infinity refused ("must be a number >= 0 and < 1, got nan").
CLI::Validator real_in(double lo, double hi, bool lo_open = false, bool hi_open = false);

/// A choice flag bound to an enum: its accepted names, help list and error all come from the
/// enum's table (core/enum_names.hpp); `only`, when not empty, the values this flag takes.
template <class E>
CLI::Option* add_enum_option(CLI::App* app, const std::string& flag, E& value,
                             const std::string& help, const std::vector<E>& only = {}) {
  std::string list;
  std::vector<std::string> names;
  for (const EnumEntry<E>& e : enum_table(E{})) {
    bool taken = only.empty();
    for (E v : only) taken = taken || v == e.value;
    if (!taken) continue;
    list += std::string(list.empty() ? "" : "; ") + e.name + ": " + e.help;
    names.push_back(e.name);
  }
  auto* o = app->add_option_function<std::string>(
      flag, [&value, flag](const std::string& s) { value = parse_enum<E>(s, flag); },
      help + ". " + list);
  o->type_name("NAME");
  o->default_str(name_of(value));
  o->check(CLI::IsMember(names));
  return o;
}

/// A library error's message with its leading parameter name ("batch_size must be >= 2") as
/// the flag that sets it ("--batch-size must be >= 2"); other messages unchanged.
std::string with_flag_names(const std::string& message);

/// The CIFAR-10 directory: `flag` if given, else $MINIDL_DATA. Throws std::invalid_argument
/// naming both when neither is set.
std::string resolve_data_dir(const std::string& flag);

/// A duration in seconds as "1h05m" (an hour or more) or "4m07s" (rounded to the second).
std::string format_duration(double seconds);

/// `n` and the noun, in the singular for 1: count_text(1, "epoch") is "1 epoch",
/// count_text(30, "epoch") "30 epochs", count_text(9.9, "epoch") "9.9 epochs",
/// count_text(1200, "batch", "batches") "1,200 batches".
std::string count_text(double n, const std::string& singular, const std::string& plural = "");

/// The Python that draws the plots: $MINIDL_PYTHON if set, else /usr/bin/python3 (Debian's
/// python3-matplotlib belongs to it; the first python3 on PATH may be another interpreter).
std::string python_interpreter();

/// The folders searched for the plot scripts: $MINIDL_SCRIPTS alone when it is set; else, in
/// order, the install's share/minidl relative to the executable (<prefix>/bin/minidl ->
/// <prefix>/share/minidl, what `cmake --install` writes) and the scripts/ folder of the source
/// tree the binary was configured from (a build folder anywhere).
std::vector<std::string> plot_script_dirs();

/// The path of plot script `script_name` (e.g. "plot_run.py") in the first of
/// plot_script_dirs() that holds it. Throws std::runtime_error "plots not drawn: <name> not
/// found; looked in <dirs>. Set MINIDL_SCRIPTS ..." otherwise ("not found in $MINIDL_SCRIPTS
/// (<dir>)..." when that is set).
std::string find_plot_script(const std::string& script_name);

/// Runs `python_interpreter() <script> <dir>` for the script found by find_plot_script, its
/// stdout discarded; returns the script's path. Throws std::runtime_error starting "plots not
/// drawn: " with the cause: the script not found (and where it was looked for), the interpreter
/// missing, matplotlib or numpy missing (with the apt-get command that installs it), or the
/// script's failure with the last line of its stderr and the command to run it by hand.
std::string draw_plots(const std::string& script_name, const std::string& dir);

/// draw_plots, for the commands whose plots are a bonus: returns whether it succeeded; on
/// failure prints draw_plots' message as one line on stderr unless `quiet`.
bool run_plot_script(const std::string& script_name, const std::string& dir, bool quiet);

/// accuracy.png and loss.png of a run folder from its metrics.csv (scripts/plot_run.py), as
/// run_plot_script: what `train` calls at its end and `minidl plot RUN_DIR` runs.
bool plot_run(const std::string& run_dir, bool quiet);

/// `--profile`'s window: when `on`, clears the profiler and enables it; stop() or the
/// destructor disables it again, keeping the rows for profiler::table().
class ProfileWindow {
 public:
  explicit ProfileWindow(bool on) : on_(on) {
    if (on_) {
      profiler::reset();
      profiler::set_enabled(true);
    }
  }
  ~ProfileWindow() { stop(); }
  ProfileWindow(const ProfileWindow&) = delete;
  ProfileWindow& operator=(const ProfileWindow&) = delete;
  void stop() {
    if (on_) profiler::set_enabled(false);
    on_ = false;
  }

 private:
  bool on_;
};

/// BN statistics at test time: running (inference mode) | population (recalibrated over the
/// training set first, as recalibrate-bn) | batch (each test batch's own statistics).
enum class EvalBnStats { kRunning, kPopulation, kBatch };
const EnumTable<EvalBnStats>& enum_table(EvalBnStats);

/// `minidl eval` (apps/cmd_eval.cpp), callable from tests.
struct EvalConfig {
  std::string checkpoint, data;
  int64_t batch_size = 1000;
  bool json = false;
  int threads = 2;
  int64_t limit = -1;
  EvalBnStats bn_stats = EvalBnStats::kRunning;
  int64_t recalibrate_limit = -1;  ///< population: first N training images (-1: all)
  bool allow_nonfinite = false;    ///< evaluate a checkpoint holding NaN or infinity
  int tta = 0;                     ///< test-time augmentation level (train/loop.hpp)
};
/// Prints the evaluation and returns the accuracy (0..1).
double run_eval(const EvalConfig& cfg);

/// train: forward, loss, backward, SGD step | eval: inference-mode forward under no-grad.
enum class BenchMode { kTrain, kEval };
const EnumTable<BenchMode>& enum_table(BenchMode);

/// `minidl bench` (apps/cmd_bench.cpp), callable from tests: times `steps` steps after `warmup`
/// untimed ones on random [batch_size, 3, 32, 32] images and prints images/s, seconds per step
/// and the peak RSS: one line, or one JSON object with `json`.
struct BenchConfig {
  std::string model = "resnet20";
  int64_t batch_size = 128;  ///< >= 2 in train mode (BatchNorm training), >= 1 in eval mode
  int64_t steps = 20;
  int64_t warmup = 3;
  int threads = 2;
  bool json = false;
  optim::TrainOnly train_only = optim::TrainOnly::kAll;
  BenchMode mode = BenchMode::kTrain;
  bool profile = false;
  /// --roofline FILE (or $MINIDL_ROOFLINE): scripts/roofline.sh's JSON; --profile then gives each
  /// op's fraction of the ceilings at --threads.
  std::string roofline;
};
/// Throws std::invalid_argument naming the flag for a bad --batch-size, --steps or --warmup, or a
/// --batch-size whose step would not fit in the machine's memory (train::check_batch_memory,
/// with the bytes needed), and create_model's error for an unknown or too large --model.
void run_bench(const BenchConfig& cfg);

}  // namespace minidl::app
