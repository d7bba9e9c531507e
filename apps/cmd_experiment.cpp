// minidl experiment NAME — the flags of the four experiments (experiments/), their printing
// and their plots (scripts/plot_experiment.py, plot_sweep.py, plot_why_bn.py).
#include <cstdio>
#include <functional>
#include <memory>

#include "apps/cli.hpp"
#include "experiments/batch_size.hpp"
#include "experiments/bn_only.hpp"
#include "experiments/why_bn.hpp"
#include "dist/process_group.hpp"

namespace minidl::app {

namespace {

enum class Experiment { kBnOnly, kBnOnlySweep, kLandscape, kCovariateShift, kBatchSize };
const EnumTable<Experiment>& enum_table(Experiment) {
  static const EnumTable<Experiment> t = {
      {Experiment::kBnOnly, "bn-only", "one model, several variants"},
      {Experiment::kBnOnlySweep, "bn-only-sweep",
       "several models: accuracy against depth and width"},
      {Experiment::kLandscape, "landscape", "loss and gradient along the gradient, BN vs no BN"},
      {Experiment::kCovariateShift, "covariate-shift",
       "standard, BN and noisy-BN training, internal covariate shift"},
      {Experiment::kBatchSize, "batch-size",
       "BN, Batch Renorm, GroupNorm and LayerNorm against the images sharing statistics"}};
  return t;
}

struct ExperimentArgs {
  Experiment name = Experiment::kBnOnly;
  experiments::BnOnlyConfig bn;
  experiments::WhyBnConfig why;
  experiments::BatchSizeConfig batch;
  std::string model, out;
  std::vector<std::string> variants;
  int64_t epochs = -1;
  uint64_t seed = 0;
  int threads = 2;
  int64_t limit_train = -1, limit_test = -1;
  std::string data;
};

/// The flags every experiment shares, onto its config (fields of the same names); epochs stay
/// with each experiment (its own default).
template <class Config>
void apply_common_flags(const ExperimentArgs& a, Config& c, const std::string& data,
                        const std::function<bool(const char*)>& given) {
  c.data = data;
  if (given("--model")) c.model = a.model;
  if (given("--out")) c.out = a.out;
  c.seed = a.seed;
  c.threads = a.threads;
  c.limit_train = a.limit_train;
  c.limit_test = a.limit_test;
}

/// The line for a run that --stop-after ended before its tables.
void print_stopped(const std::string& name, int64_t stop_after, const std::string& out) {
  std::printf(
      "\nstopped after --stop-after %lld epochs; continue with the same flags plus --resume: "
      "minidl experiment %s ... --out %s --resume\n",
      static_cast<long long>(stop_after), name.c_str(), out.c_str());
}

/// `experiment batch-size`: trains its cells (or continues them), then prints and plots.
void run_batch_size(ExperimentArgs& a, const std::string& data,
                    const std::function<bool(const char*)>& given) {
  experiments::BatchSizeConfig& c = a.batch;
  apply_common_flags(a, c, data, given);
  if (a.epochs > 0) c.epochs = a.epochs;
  c.stop_after = a.bn.stop_after;
  c.resume = a.bn.resume;
  c.on_cell_start = [](const std::string& cell, int64_t done) {
    std::printf("\n=== %s%s ===\n", cell.c_str(),
                done > 0 ? (", from epoch " + std::to_string(done)).c_str() : "");
  };
  c.callbacks.on_epoch_end = print_epoch_line;
  experiments::BatchSizeReport r;
  try {
    r = experiments::run_batch_size(c);
  } catch (const train::ResumeError& e) {
    throw std::runtime_error(std::string("--resume: ") + e.what());
  }
  if (!r.finished) {
    print_stopped("batch-size", c.stop_after, c.out);
    return;
  }
  if (run_plot_script("plot_batch_size.py", c.out, false))
    std::printf("plots: %s/batch_size.png\n", c.out.c_str());
  std::printf("\n%s\nwritten: %s/results.md, %s/results.csv\n", r.markdown.c_str(), c.out.c_str(),
              c.out.c_str());
}

void run(ExperimentArgs& a, CLI::App* x, const std::vector<CLI::Option*>& bn_only,
         const std::vector<CLI::Option*>& why_only) {
  const bool why = a.name == Experiment::kLandscape || a.name == Experiment::kCovariateShift;
  const std::string name = name_of(a.name);
  auto given = [x](const char* flag) { return x->get_option(flag)->count() > 0; };
  if (a.name == Experiment::kBatchSize) {
    for (const char* flag : {"--models", "--recipe", "--bn-sync", "--variants"}) {
      if (given(flag)) throw std::invalid_argument(std::string(flag) + " is not for batch-size");
    }
    for (CLI::Option* o : why_only) {
      if (o->count() > 0)
        throw std::invalid_argument(o->get_name() + " is for landscape and covariate-shift, not " +
                                    name);
    }
    run_batch_size(a, resolve_data_dir(a.data), given);
    return;
  }
  for (CLI::Option* o : why ? bn_only : why_only) {
    if (o->count() > 0) {
      throw std::invalid_argument(o->get_name() + " is for " +
                                  (why ? "bn-only and bn-only-sweep"
                                       : "landscape and "
                                         "covariate-shift") +
                                  ", not " + name);
    }
  }
  const std::string data = resolve_data_dir(a.data);
  if (why) {
    experiments::WhyBnConfig& c = a.why;
    apply_common_flags(a, c, data, given);
    c.variants = a.variants;
    c.epochs = a.epochs;
    c.on_epoch = [](const std::string& label, const experiments::ProbedRun::Epoch& e) {
      std::printf(
          "%s epoch %3lld  train loss %.4f acc %6.2f%%  test loss %.4f acc %6.2f%%  %.1fs\n",
          label.c_str(), static_cast<long long>(e.epoch), e.train_loss, 100.0 * e.train_accuracy,
          e.test_loss, 100.0 * e.test_accuracy, e.seconds);
      std::fflush(stdout);
    };
    c.on_diverged = [](const std::string& label, const std::string& why_text) {
      std::printf("%s: %s\n", label.c_str(), why_text.c_str());
    };
    const experiments::WhyBnReport r = a.name == Experiment::kLandscape
                                           ? experiments::run_landscape(c)
                                           : experiments::run_covariate_shift(c);
    std::printf("%s", r.markdown.c_str());
    if (run_plot_script("plot_why_bn.py", r.out, false))
      std::printf("plots: %s/*.png\n", r.out.c_str());
    return;
  }
  experiments::BnOnlyConfig& c = a.bn;
  const bool sweep = a.name == Experiment::kBnOnlySweep;
  if (sweep && given("--model"))
    throw std::invalid_argument("--model is for bn-only; bn-only-sweep takes --models");
  if (!sweep && given("--models"))
    throw std::invalid_argument("--models is for bn-only-sweep; bn-only takes --model");
  apply_common_flags(a, c, data, given);
  if (a.epochs > 0) c.epochs = a.epochs;
  if (given("--variants")) {
    c.variants.clear();
    for (const std::string& v : a.variants)
      c.variants.push_back(parse_enum<optim::TrainOnly>(v, "--variants: a variant"));
  }
  c.group = dist::default_group();
  const bool rank0 = c.group->rank() == 0;
  if (!rank0) c.callbacks = {};
  c.on_variant_start = [rank0](const std::string& model, optim::TrainOnly v, int64_t done) {
    if (!rank0) return;
    std::printf("\n=== %s, variant %s%s ===\n", model.c_str(), name_of(v).c_str(),
                done > 0 ? (", from epoch " + std::to_string(done)).c_str() : "");
  };
  c.callbacks.on_epoch_end = print_epoch_line;
  experiments::BnOnlyReport r;
  try {
    r = sweep ? experiments::run_bn_only_sweep(c) : experiments::run_bn_only(c);
  } catch (const train::ResumeError& e) {
    throw std::runtime_error(std::string("--resume: ") + e.what());
  }
  if (!rank0) return;
  if (!r.finished) {
    print_stopped(name, c.stop_after, c.out);
    return;
  }
  for (size_t i = 0; i < r.tables.size(); ++i) {
    const bool sweep_table = sweep && i + 1 == r.tables.size();
    if (run_plot_script(sweep_table ? "plot_sweep.py" : "plot_experiment.py", r.tables[i], false))
      std::printf("plots: %s/*.png\n", r.tables[i].c_str());
  }
  std::printf("\n%s\nwritten: %s/results.md, %s/results.csv\n", r.markdown.c_str(), c.out.c_str(),
              c.out.c_str());
}

}  // namespace

Command add_experiment(CLI::App& app) {
  auto a = std::make_shared<ExperimentArgs>();
  const long long kEpochs = 100000;
  auto* x = app.add_subcommand("experiment", "run a named experiment (see NAME)");
  add_enum_option(x, "name", a->name, "the experiment")->required();
  x->add_option("--data", a->data, "CIFAR-10 binary directory (or $MINIDL_DATA)");
  x->add_option("--model", a->model,
                "bn-only: the model (default resnet14); landscape, covariate-shift: the VGG "
                "without BN (default vgg11_w4); batch-size: a CIFAR ResNet (default resnet20)");
  x->add_option(
       "--epochs", a->epochs,
       "epochs per variant (bn-only: 15; landscape: 20; covariate-shift: 15; batch-size: 5 "
       "per cell)")
      ->check(integer_in(1, kEpochs));
  x->add_option("--out", a->out,
                "output folder (default runs/bn-only, runs/landscape, runs/covariate-shift, "
                "runs/batch-size)");
  x->add_option("--seed", a->seed, "seed (shared by every variant)")
      ->capture_default_str()
      ->check(integer_in(0, std::numeric_limits<long long>::max()));
  x->add_option("--threads", a->threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  x->add_option("--limit-train", a->limit_train, "train on the first N images")
      ->check(integer_in(1, 50000));
  x->add_option("--limit-test", a->limit_test, "test on the first N images")
      ->check(integer_in(1, 10000));
  x->add_option("--variants", a->variants,
                "bn-only: subset of all bn fc bn+fc random-per-channel; landscape: of standard bn; "
                "covariate-shift: of standard bn noisy-bn");
  const std::vector<CLI::Option*> bn_only = {
      x->add_option("--models", a->bn.models, "bn-only-sweep: the models")->capture_default_str(),
      x->add_option("--stop-after", a->bn.stop_after,
                    "train at most N epochs in this invocation (summed over variants, models or "
                    "cells), then stop; continue with --resume")
          ->check(integer_in(1, kEpochs)),
      x->add_flag("--resume", a->bn.resume,
                  "continue the experiment in --out: finished variants are kept, a partial one "
                  "continues (same flags required)"),
      add_enum_option(x, "--recipe", a->bn.recipe,
                      "bn-only: the recipe of every variant (bn-speedrun: its optimizer, lr, "
                      "batch and data settings; --model and --epochs stay the experiment's)")
          ->check(CLI::IsMember(std::vector<std::string>{"default", "frankle2021", "bn-speedrun"})),
      add_enum_option(x, "--bn-sync", a->bn.bn_sync,
                      "bn-only under mpirun: BatchNorm statistics per process or global")};
  const std::vector<CLI::Option*> why_only = {
      x->add_option("--lr", a->why.lrs,
                    "landscape, covariate-shift: learning rate(s), one run per variant and lr "
                    "(e.g. --lr 0.1 0.5)")
          ->capture_default_str()
          ->check(real_in(0, 1000, true)),
      x->add_option("--batch-size", a->why.batch_size, "landscape, covariate-shift: batch size")
          ->capture_default_str()
          ->check(integer_in(2, 65536)),
      x->add_option("--momentum", a->why.momentum, "landscape, covariate-shift: SGD momentum")
          ->capture_default_str()
          ->check(real_in(0, 1, false, true)),
      x->add_option("--weight-decay", a->why.weight_decay,
                    "landscape, covariate-shift: L2 weight decay")
          ->capture_default_str()
          ->check(real_in(0, 1)),
      x->add_option("--probes", a->why.probes,
                    "landscape, covariate-shift: measurements per run, evenly spaced")
          ->capture_default_str()
          ->check(integer_in(1, 100000)),
      x->add_option("--etas", a->why.eta_factors,
                    "landscape: step sizes of the probe, as multiples of the lr")
          ->capture_default_str()
          ->check(real_in(0, 1000, true)),
      x->add_option("--layer", a->why.layer,
                    "covariate-shift: the conv block (1-based) whose pre-activations are recorded")
          ->capture_default_str()
          ->check(integer_in(1, 1000))};
  return {x, [a, x, bn_only, why_only] { run(*a, x, bn_only, why_only); }};
}

}  // namespace minidl::app
