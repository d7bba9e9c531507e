// minidl experiment NAME — the experiments (experiments/), one subcommand each with its own
// flags, their printing and their plots (scripts/plot_experiment.py, plot_sweep.py,
// plot_why_bn.py, plot_batch_size.py).
#include <cstdio>
#include <functional>
#include <memory>
#include <sstream>

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
      "\nstopped after --stop-after %s; continue with the same flags plus --resume: "
      "minidl experiment %s ... --out %s --resume\n",
      count_text(stop_after, "epoch").c_str(), name.c_str(), out.c_str());
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

void run(ExperimentArgs& a, CLI::App* x) {
  const bool why = a.name == Experiment::kLandscape || a.name == Experiment::kCovariateShift;
  const std::string name = name_of(a.name);
  auto given = [x](const char* flag) {
    const CLI::Option* o = x->get_option_no_throw(flag);
    return o && o->count() > 0;
  };
  if (a.name == Experiment::kBatchSize) {
    run_batch_size(a, resolve_data_dir(a.data), given);
    return;
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

/// "a b c": a list flag's default as typed.
template <class T>
std::string words(const std::vector<T>& v) {
  std::string s;
  for (const T& x : v) {
    std::ostringstream o;
    o << x;
    s += (s.empty() ? "" : " ") + o.str();
  }
  return s;
}

/// The flags of experiment `e` (its subcommand `x`), each with that experiment's default.
void add_experiment_flags(CLI::App* x, Experiment e, ExperimentArgs& a) {
  const long long kEpochs = 100000;
  const bool bn_only = e == Experiment::kBnOnly || e == Experiment::kBnOnlySweep;
  const bool why = e == Experiment::kLandscape || e == Experiment::kCovariateShift;
  const experiments::BnOnlyConfig bn;
  const experiments::BatchSizeConfig batch;
  const experiments::WhyBnConfig wb;
  x->add_option("--data", a.data,
                "the CIFAR-10 binary folder (cifar-10-batches-bin); $MINIDL_DATA when not given")
      ->type_name("DIR");
  if (e != Experiment::kBnOnlySweep) {
    const char* what = e == Experiment::kBnOnly      ? "the model"
                       : e == Experiment::kBatchSize ? "a CIFAR ResNet (resnet<D>[_<W>])"
                                                     : "the VGG without BN (vgg11[_w<k>])";
    x->add_option("--model", a.model, what)
        ->type_name("NAME")
        ->default_str(e == Experiment::kBnOnly      ? bn.model
                      : e == Experiment::kBatchSize ? batch.model
                                                    : wb.model);
  }
  if (e == Experiment::kBnOnlySweep) {
    x->add_option("--models", a.bn.models, "the models, one sweep row each")
        ->type_name("NAME")
        ->default_str(words(bn.models));
  }
  const char* per = e == Experiment::kBatchSize ? "epochs per cell"
                    : e == Experiment::kBnOnly || e == Experiment::kBnOnlySweep
                        ? "epochs per variant"
                        : "epochs per run";
  x->add_option("--epochs", a.epochs, per)
      ->default_str(std::to_string(e == Experiment::kLandscape        ? 20
                                   : e == Experiment::kCovariateShift ? 15
                                   : e == Experiment::kBatchSize      ? batch.epochs
                                                                      : bn.epochs))
      ->check(integer_in(1, kEpochs));
  x->add_option("--out", a.out, "the output folder")
      ->type_name("DIR")
      ->default_str(e == Experiment::kLandscape        ? "runs/landscape"
                    : e == Experiment::kCovariateShift ? "runs/covariate-shift"
                    : e == Experiment::kBatchSize      ? batch.out
                                                       : bn.out);
  x->add_option("--seed", a.seed,
                e == Experiment::kBatchSize ? "the seed, shared by every cell"
                                            : "the seed, shared by every variant")
      ->capture_default_str()
      ->check(integer_in(0, std::numeric_limits<long long>::max()));
  x->add_option("--threads", a.threads, "OpenMP threads")
      ->capture_default_str()
      ->check(integer_in(1, 256));
  x->add_option("--limit-train", a.limit_train, "train on the first N training images only")
      ->check(integer_in(1, 50000));
  x->add_option("--limit-test", a.limit_test, "test on the first N test images only")
      ->check(integer_in(1, 10000));
  if (bn_only) {
    std::vector<std::string> variants;
    for (optim::TrainOnly v : bn.variants) variants.push_back(name_of(v));
    x->add_option("--variants", a.variants,
                  "the variants, any of all, bn, fc, bn+fc and random-per-channel")
        ->type_name("NAME")
        ->default_str(words(variants));
  } else if (why) {
    x->add_option("--variants", a.variants,
                  e == Experiment::kLandscape ? "the variants, any of standard and bn"
                                              : "the variants, any of standard, bn and noisy-bn")
        ->type_name("NAME")
        ->default_str(e == Experiment::kLandscape ? "standard bn" : "standard bn noisy-bn");
  }
  if (bn_only || e == Experiment::kBatchSize) {
    x->add_option("--stop-after", a.bn.stop_after,
                  std::string("train at most N epochs in this invocation (summed over ") +
                      (e == Experiment::kBatchSize ? "cells" : "variants and models") +
                      "), then stop; continue with --resume")
        ->check(integer_in(1, kEpochs));
    x->add_flag("--resume", a.bn.resume,
                std::string("continue the experiment in --out: finished ") +
                    (e == Experiment::kBatchSize ? "cells" : "variants") +
                    " are kept, a partial one continues (the same flags required)");
  }
  if (bn_only) {
    add_enum_option(
        x, "--recipe", a.bn.recipe,
        "the recipe of every variant (bn-speedrun: its optimizer, lr, batch and data "
        "settings; --model and --epochs stay the experiment's)",
        {train::Recipe::kDefault, train::Recipe::kFrankle2021, train::Recipe::kBnSpeedrun});
    add_enum_option(x, "--bn-sync", a.bn.bn_sync,
                    "under mpirun: BatchNorm's statistics per process or global");
  }
  if (why) {
    x->add_option("--lr", a.why.lrs,
                  "the learning rate(s): one run per variant and learning rate (e.g. --lr 0.1 "
                  "0.5)")
        ->default_str(words(wb.lrs))
        ->check(real_in(0, 1000, true));
    x->add_option("--batch-size", a.why.batch_size, "images per batch")
        ->capture_default_str()
        ->check(integer_in(2, 65536));
    x->add_option("--momentum", a.why.momentum, "SGD's momentum")
        ->capture_default_str()
        ->check(real_in(0, 1, false, true));
    x->add_option("--weight-decay", a.why.weight_decay, "L2 weight decay")
        ->capture_default_str()
        ->check(real_in(0, 1));
    x->add_option("--probes", a.why.probes, "measurements per run, evenly spaced")
        ->capture_default_str()
        ->check(integer_in(1, 100000));
  }
  if (e == Experiment::kLandscape) {
    x->add_option("--etas", a.why.eta_factors,
                  "the probe's step sizes, as multiples of the learning rate")
        ->default_str(words(wb.eta_factors))
        ->check(real_in(0, 1000, true));
  }
  if (e == Experiment::kCovariateShift) {
    x->add_option("--layer", a.why.layer,
                  "the conv block (1-based) whose pre-activations are recorded")
        ->capture_default_str()
        ->check(integer_in(1, 1000));
  }
}

}  // namespace

Command add_experiment(CLI::App& app) {
  auto a = std::make_shared<ExperimentArgs>();
  auto* x = app.add_subcommand("experiment",
                               "run a named experiment: minidl experiment NAME --help for its "
                               "flags (docs/experiments.md)");
  x->require_subcommand(1);
  std::vector<std::pair<Experiment, CLI::App*>> subs;
  for (const EnumEntry<Experiment>& e : enum_table(Experiment{})) {
    CLI::App* sub = x->add_subcommand(e.name, e.help);
    add_experiment_flags(sub, e.value, *a);
    subs.emplace_back(e.value, sub);
  }
  return {x, [a, subs] {
            for (const auto& [e, sub] : subs) {
              if (!sub->parsed()) continue;
              a->name = e;
              run(*a, sub);
            }
          }};
}

}  // namespace minidl::app
