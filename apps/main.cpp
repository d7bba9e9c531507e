// minidl — the command-line interface (CLI11). Parses flags into the subcommands' config structs
// (apps/commands.hpp); errors from the library are printed as one line, exit status 1.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <exception>
#include <stdexcept>

#include "apps/commands.hpp"
#include "layers/models/registry.hpp"
#include "data/loader.hpp"
#include "optim/freeze.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"

using namespace minidl::app;

namespace {

/// "a | b | c" for help texts.
std::string choices(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : " | ") + x;
  return s;
}

std::string shown(const std::string& v) { return v.size() > 24 ? v.substr(0, 24) + "..." : v; }

/// A CLI11 check: an integer in [lo, hi], refused with the range in words
/// ("must be an integer from 1 to 256, got 0"). CLI11 prefixes the flag's name.
CLI::Validator integer_in(long long lo, long long hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        const std::string want =
            "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
        errno = 0;
        char* end = nullptr;
        const long long x = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || errno == ERANGE || x < lo || x > hi)
          return want + ", got " + shown(v);
        return "";
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

/// A CLI11 check: a finite number in the interval from lo to hi (open at either end when asked),
/// NaN and infinity refused ("must be a number >= 0 and < 1, got nan").
CLI::Validator real_in(double lo, double hi, bool lo_open = false, bool hi_open = false) {
  auto num = [](double d) {
    std::ostringstream o;
    o << d;
    return o.str();
  };
  const std::string range = "a number " + std::string(lo_open ? "> " : ">= ") + num(lo) + " and " +
                            (hi_open ? "< " : "<= ") + num(hi);
  return CLI::Validator(
      [=](std::string& v) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        const bool ok = !v.empty() && *end == '\0' && std::isfinite(x) &&
                        (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
        return ok ? "" : "must be " + range + ", got " + shown(v);
      },
      "FLOAT: " + range);
}

/// Range checks of every numeric flag, by subcommand and flag name (flags not listed take
/// strings or are checked with IsMember where they are declared).
void add_range_checks(CLI::App& app) {
  const long long kEpochs = 100000, kBatch = 65536, kThreads = 256;
  const std::map<std::string, std::map<std::string, CLI::Validator>> rules = {
      {"train",
       {{"--epochs", integer_in(1, kEpochs)},
        {"--batch-size", integer_in(2, kBatch)},
        {"--lr", real_in(0, 1000, true)},
        {"--momentum", real_in(0, 1, false, true)},
        {"--weight-decay", real_in(0, 1)},
        {"--warmup", real_in(-1, kEpochs)},
        {"--milestones", real_in(0, kEpochs)},
        {"--gamma", real_in(0, 10, true)},
        {"--label-smoothing", real_in(0, 1, false, true)},
        {"--seed", integer_in(0, std::numeric_limits<long long>::max())},
        {"--threads", integer_in(1, kThreads)},
        {"--limit-train", integer_in(1, 50000)},
        {"--limit-test", integer_in(1, 10000)},
        {"--stop-after", integer_in(1, kEpochs)},
        {"--tta", integer_in(0, 2)}}},
      {"eval",
       {{"--batch-size", integer_in(1, kBatch)},
        {"--tta", integer_in(0, 2)},
        {"--threads", integer_in(1, kThreads)},
        {"--limit", integer_in(1, 10000)},
        {"--recalibrate-limit", integer_in(1, 50000)}}},
      {"predict", {{"--top", integer_in(1, 10)}, {"--threads", integer_in(1, kThreads)}}},
      {"bench",
       {{"--batch-size", integer_in(1, kBatch)},
        {"--steps", integer_in(1, 1000000)},
        {"--warmup", integer_in(0, 1000000)},
        {"--threads", integer_in(1, kThreads)}}},
      {"recalibrate-bn",
       {{"--batch-size", integer_in(1, kBatch)},
        {"--limit", integer_in(1, 50000)},
        {"--threads", integer_in(1, kThreads)}}},
      {"experiment",
       {{"--epochs", integer_in(1, kEpochs)},
        {"--stop-after", integer_in(1, kEpochs)},
        {"--seed", integer_in(0, std::numeric_limits<long long>::max())},
        {"--threads", integer_in(1, kThreads)},
        {"--limit-train", integer_in(1, 50000)},
        {"--limit-test", integer_in(1, 10000)}}},
  };
  for (CLI::App* sub : app.get_subcommands({})) {
    auto r = rules.find(sub->get_name());
    if (r == rules.end()) continue;
    for (CLI::Option* o : sub->get_options()) {
      auto v = r->second.find(o->get_name());
      if (v != r->second.end()) o->check(v->second);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minidl — a small C++ deep learning framework for inspecting BatchNorm on CIFAR-10"};
  app.require_subcommand(1);

  TrainConfig tc;
  auto* train = app.add_subcommand("train", "train a model on CIFAR-10");
  train->add_option("--data", tc.data, "CIFAR-10 binary directory (or $MINIDL_DATA)");
  train
      ->add_option("--model", tc.model,
                   "resnet<D>[_<W>] (e.g. resnet20, resnet14_64), vgg11[_bn|_noisybn][_w<k>] (e.g. "
                   "vgg11_bn_w4), airbench94 or cnn")
      ->capture_default_str();
  auto* epochs_opt = train->add_option("--epochs", tc.epochs, "epochs")->capture_default_str();
  train->add_option("--batch-size", tc.batch_size, "images per batch")->capture_default_str();
  train->add_option("--optimizer", tc.optimizer, choices(minidl::optim::optimizer_names()))
      ->capture_default_str()
      ->check(CLI::IsMember(minidl::optim::optimizer_names()));
  train->add_option("--lr", tc.lr, "peak learning rate")->capture_default_str();
  train->add_option("--momentum", tc.momentum, "SGD momentum")->capture_default_str();
  train->add_option("--nesterov", tc.nesterov, "Nesterov momentum (true/false)")
      ->capture_default_str();
  train
      ->add_option("--weight-decay", tc.weight_decay,
                   "L2 (sgd, adam) or decoupled (adamw) "
                   "weight decay, trainable parameters only")
      ->capture_default_str();
  train
      ->add_option("--schedule", tc.schedule,
                   choices(train_schedule_kinds()) + ", stepped per batch")
      ->capture_default_str()
      ->check(CLI::IsMember(train_schedule_kinds()));
  train->add_option("--warmup", tc.warmup_epochs, "linear warm-up in epochs (-1: 15% of the run)")
      ->capture_default_str();
  train->add_option("--milestones", tc.milestones, "multistep: epochs where lr *= gamma");
  train->add_option("--gamma", tc.gamma, "multistep factor")->capture_default_str();
  train->add_option("--label-smoothing", tc.label_smoothing, "cross-entropy label smoothing")
      ->capture_default_str();
  train->add_option("--augment", tc.augment, "random crop (pad 4) + horizontal flip (true/false)")
      ->capture_default_str();
  train->add_option("--seed", tc.seed, "seed of init, shuffling and augmentation")
      ->capture_default_str();
  train->add_option("--threads", tc.threads, "OpenMP threads")->capture_default_str();
  train->add_option("--limit-train", tc.limit_train, "train on the first N images");
  train->add_option("--limit-test", tc.limit_test, "evaluate on the first N test images");
  train->add_option("--out", tc.out, "RUN_DIR for metrics.csv, config.json, model.safetensors")
      ->capture_default_str();
  train->add_option("--resume", tc.resume, "continue the run in RUN_DIR (its config.json)");
  train->add_option("--stop-after", tc.stop_after,
                    "stop after N epochs of this invocation "
                    "(the schedule still spans --epochs; continue with --resume)");
  train
      ->add_option("--normalize", tc.normalize,
                   "input normalization: cifar10 (its own mean/std) "
                   "| imagenet (torchvision's ImageNet mean/std, as the BN-only paper's code)")
      ->capture_default_str()
      ->check(CLI::IsMember(minidl::data::normalization_names()));
  train->add_option("--bn-init", tc.bn_init, "BatchNorm gamma init: fixed (1) | uniform (U[0,1])")
      ->capture_default_str()
      ->check(CLI::IsMember(minidl::bn_init_names()));
  train
      ->add_option("--train-only", tc.train_only,
                   "which parameters learn (freezes the rest: no gradient, no decay): all | bn "
                   "| fc | bn+fc | random-per-channel")
      ->capture_default_str()
      ->check(CLI::IsMember(minidl::optim::train_only_modes()));
  train
      ->add_option("--bn-stats", tc.bn_stats,
                   "BN statistics while training (freezes statistics, not parameters): batch "
                   "(train-mode BN) | running (inference-mode BN, as Keras trainable=False)")
      ->capture_default_str()
      ->check(CLI::IsMember(train_bn_stats_modes()));
  std::string train_recipe = "default";
  train
      ->add_option("--recipe", train_recipe,
                   "default (the flags above) | airbench94 (Keller Jordan's 94% recipe: model, "
                   "optimizer, schedule and augmentation fixed; takes only --data, --seed, --tta, "
                   "--out, --threads, --epochs, --batch-size, --limit-train, --limit-test, "
                   "--eval-every-epoch)")
      ->capture_default_str()
      ->check(CLI::IsMember(train_recipes()));
  AirbenchConfig ac;
  train
      ->add_option("--tta", ac.tta,
                   "airbench94: test-time augmentation of the final evaluation: 0 none | 1 "
                   "mirror | 2 mirror and one-pixel translations")
      ->capture_default_str();
  train->add_flag("--eval-every-epoch", ac.eval_every_epoch,
                  "airbench94: also evaluate on the test set (no TTA) after every epoch, not "
                  "only after the last (10 more test passes in the wall time)");
  train->add_flag("--profile", tc.profile,
                  "print a per-op time table (calls, ms, % and GFLOP/s "
                  "per op and pass) of the first epoch's training loop, evaluation excluded");

  EvalConfig ec;
  auto* eval = app.add_subcommand("eval", "test-set accuracy of a checkpoint in inference mode");
  eval->add_option("--checkpoint", ec.checkpoint, "model.safetensors")->required();
  eval->add_option("--data", ec.data, "CIFAR-10 binary directory (or $MINIDL_DATA)");
  eval->add_option("--batch-size", ec.batch_size, "images per batch")->capture_default_str();
  eval->add_flag("--json", ec.json, "print one JSON object");
  eval->add_flag("--allow-nonfinite", ec.allow_nonfinite,
                 "evaluate a checkpoint even if a "
                 "tensor holds NaN or infinity (refused otherwise)");
  eval->add_option("--threads", ec.threads, "OpenMP threads")->capture_default_str();
  eval->add_option("--limit", ec.limit, "evaluate the first N test images");
  eval->add_option("--bn-stats", ec.bn_stats,
                   "BN statistics at test time: running (inference mode) | population "
                   "(recalibrated over the training set first) | batch (each test batch's own)")
      ->capture_default_str()
      ->check(CLI::IsMember(eval_bn_stats_modes()));
  eval->add_option("--recalibrate-limit", ec.recalibrate_limit,
                   "population: use the first N training images");
  eval->add_option("--tta", ec.tta,
                   "test-time augmentation: 0 none | 1 mean logits of the image and its "
                   "mirror | 2 also one-pixel translations (6 views, airbench94's)")
      ->capture_default_str();

  PredictConfig pc;
  auto* predict = app.add_subcommand("predict", "top classes for image files (PNG/JPEG/BMP)");
  predict->add_option("--checkpoint", pc.checkpoint, "model.safetensors")->required();
  predict->add_option("images", pc.images, "image files")->required();
  predict->add_option("--top", pc.top, "classes to show")->capture_default_str();
  predict->add_option("--threads", pc.threads, "OpenMP threads")->capture_default_str();

  BenchConfig bc;
  auto* bench = app.add_subcommand("bench",
                                   "images/s and peak RSS of training steps or "
                                   "inference forward passes, on random data");
  bench->add_option("--model", bc.model, "model name")->capture_default_str();
  bench->add_option("--batch-size", bc.batch_size, "images per batch (>= 2 in train mode)")
      ->capture_default_str();
  bench->add_option("--steps", bc.steps, "timed steps")->capture_default_str();
  bench->add_option("--warmup", bc.warmup, "untimed steps first")->capture_default_str();
  bench->add_option("--threads", bc.threads, "OpenMP threads")->capture_default_str();
  bench->add_flag("--json", bc.json, "print one JSON object");
  bench->add_option("--train-only", bc.train_only, "which parameters learn (as in train)")
      ->capture_default_str()
      ->check(CLI::IsMember(minidl::optim::train_only_modes()));
  bench
      ->add_option("--mode", bc.mode,
                   "train: forward, loss, backward, SGD step | eval: "
                   "inference-mode forward under no-grad (no loss, no backward)")
      ->capture_default_str()
      ->check(CLI::IsMember(bench_modes()));
  bench->add_flag("--profile", bc.profile,
                  "print a per-op time table (calls, ms, % and GFLOP/s "
                  "per op and pass) of the timed steps (to stderr with --json)");

  std::string bn_stats_checkpoint;
  auto* bn_stats = app.add_subcommand("bn-stats",
                                      "per BN layer: mean/std/min/max of gamma, "
                                      "beta, running_mean, running_var");
  bn_stats->add_option("--checkpoint", bn_stats_checkpoint, "model.safetensors")->required();

  RecalibrateConfig rc;
  auto* recal = app.add_subcommand("recalibrate-bn",
                                   "recompute every BN's population mean and "
                                   "unbiased variance over the training set (inference mode, "
                                   "layer after layer) and save a new checkpoint");
  recal->add_option("--checkpoint", rc.checkpoint, "model.safetensors")->required();
  recal->add_option("--data", rc.data, "CIFAR-10 binary directory (or $MINIDL_DATA)");
  recal->add_option("--out", rc.out, "the new checkpoint")->required();
  recal->add_option("--batch-size", rc.batch_size, "images per batch")->capture_default_str();
  recal->add_option("--limit", rc.limit, "use the first N training images");
  recal->add_option("--threads", rc.threads, "OpenMP threads")->capture_default_str();

  ExperimentConfig xc;
  std::string experiment_name;
  auto* experiment = app.add_subcommand("experiment",
                                        "run a named experiment: bn-only | "
                                        "bn-only-sweep | landscape | covariate-shift");
  experiment
      ->add_option("name", experiment_name,
                   "bn-only (one model, several variants) | "
                   "bn-only-sweep (several models: accuracy against depth and width) | "
                   "landscape (loss and gradient along the gradient, BN vs no BN) | "
                   "covariate-shift (standard, BN and noisy-BN training, internal "
                   "covariate shift)")
      ->required()
      ->check(CLI::IsMember(experiment_names()));
  experiment->add_option("--data", xc.data, "CIFAR-10 binary directory (or $MINIDL_DATA)");
  auto* model_opt = experiment->add_option("--model", xc.model,
                                           "bn-only: the model (default "
                                           "resnet14); landscape, covariate-shift: the VGG "
                                           "without BN (default vgg11_w4)");
  auto* models_opt = experiment->add_option("--models", xc.models, "bn-only-sweep: the models")
                         ->capture_default_str();
  auto* stop_after_opt =
      experiment->add_option("--stop-after", xc.stop_after,
                             "train at most N epochs in this "
                             "invocation (summed over variants and models), then stop; continue "
                             "with --resume");
  auto* resume_opt =
      experiment->add_flag("--resume", xc.resume,
                           "continue the experiment in --out: finished "
                           "variants are kept, a partial one continues (same flags required)");
  auto* epochs_x_opt = experiment->add_option("--epochs", xc.epochs,
                                              "epochs per variant (bn-only: "
                                              "15; landscape: 20; covariate-shift: 15)");
  auto* out_opt = experiment->add_option("--out", xc.out,
                                         "output folder (default runs/bn-only, "
                                         "runs/landscape, runs/covariate-shift)");
  experiment->add_option("--seed", xc.seed, "seed (shared by every variant)")
      ->capture_default_str();
  auto* recipe_opt =
      experiment->add_option("--recipe", xc.recipe, "default | frankle2021 (the paper's)")
          ->capture_default_str()
          ->check(CLI::IsMember(experiment_recipes()));
  experiment->add_option("--threads", xc.threads, "OpenMP threads")->capture_default_str();
  experiment->add_option("--limit-train", xc.limit_train, "train on the first N images");
  experiment->add_option("--limit-test", xc.limit_test, "test on the first N images");
  std::vector<std::string> variants;
  auto* variants_opt =
      experiment->add_option("--variants", variants,
                             "bn-only: subset of all bn fc bn+fc random-per-channel; "
                             "landscape: of standard bn; covariate-shift: of standard bn noisy-bn");
  // landscape and covariate-shift only (Santurkar et al. 2018; apps/cmd_why_bn.cpp)
  WhyBnConfig wc;
  std::vector<CLI::Option*> why_only = {
      experiment
          ->add_option("--lr", wc.lrs,
                       "landscape, covariate-shift: learning rate(s), one "
                       "run per variant and lr (e.g. --lr 0.1 0.5)")
          ->capture_default_str()
          ->check(real_in(0, 100, true)),
      experiment
          ->add_option("--batch-size", wc.batch_size,
                       "landscape, covariate-shift: batch "
                       "size")
          ->capture_default_str()
          ->check(integer_in(2, 65536)),
      experiment
          ->add_option("--momentum", wc.momentum,
                       "landscape, covariate-shift: SGD "
                       "momentum")
          ->capture_default_str()
          ->check(real_in(0, 1, false, true)),
      experiment
          ->add_option("--weight-decay", wc.weight_decay,
                       "landscape, covariate-shift: L2 "
                       "weight decay")
          ->capture_default_str()
          ->check(real_in(0, 1)),
      experiment
          ->add_option("--probes", wc.probes,
                       "landscape, covariate-shift: measurements "
                       "per run, evenly spaced")
          ->capture_default_str()
          ->check(integer_in(1, 100000)),
      experiment
          ->add_option("--etas", wc.eta_factors,
                       "landscape: step sizes of the probe, as "
                       "multiples of the lr")
          ->capture_default_str()
          ->check(real_in(0, 1000, true)),
      experiment
          ->add_option("--layer", wc.layer,
                       "covariate-shift: the conv block (1-based) "
                       "whose pre-activations are recorded")
          ->capture_default_str()
          ->check(integer_in(1, 1000))};

  add_range_checks(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // --help: the usage, exit status 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A bad flag: one line naming it, exit status 1 like every other error.
    std::fprintf(stderr, "minidl: error: %s\nRun with --help for the flags and their ranges.\n",
                 e.what());
    return 1;
  }
  try {
    if (*train && train_recipe == "airbench94") {
      for (CLI::Option* o : train->get_options()) {
        static const std::vector<std::string> taken = {
            "--data",   "--seed",       "--tta",         "--out",        "--threads",
            "--epochs", "--batch-size", "--limit-train", "--limit-test", "--eval-every-epoch"};
        const std::string& name = o->get_name();
        if (o->count() > 0 && !is_one_of(name, taken) && name != "--recipe" && name != "--help") {
          std::string list;
          for (const std::string& t : taken) list += (list.empty() ? "" : ", ") + t;
          throw std::invalid_argument(name + " is fixed by --recipe airbench94 (it takes " + list +
                                      ")");
        }
      }
      ac.data = tc.data;
      ac.seed = tc.seed;
      ac.threads = tc.threads;
      if (train->get_option("--out")->count() > 0) ac.out = tc.out;
      if (epochs_opt->count() > 0) ac.epochs = static_cast<double>(tc.epochs);
      if (train->get_option("--batch-size")->count() > 0) ac.batch_size = tc.batch_size;
      ac.limit_train = tc.limit_train;
      ac.limit_test = tc.limit_test;
      run_airbench94(ac);
    } else if (*train) {
      if (train->get_option("--tta")->count() > 0) {
        throw std::invalid_argument(
            "--tta is for --recipe airbench94 (minidl eval --tta evaluates any checkpoint "
            "with test-time augmentation)");
      }
      if (train->get_option("--eval-every-epoch")->count() > 0) {
        throw std::invalid_argument(
            "--eval-every-epoch is for --recipe airbench94 (the default recipe evaluates "
            "after every epoch)");
      }
      tc.epochs_set_by_user = epochs_opt->count() > 0;
      run_train(tc);
    } else if (*eval) {
      run_eval(ec);
    } else if (*predict) {
      run_predict(pc);
    } else if (*bench) {
      run_bench(bc);
    } else if (*bn_stats) {
      run_bn_stats(bn_stats_checkpoint);
    } else if (*recal) {
      run_recalibrate(rc);
    } else if (*experiment &&
               (experiment_name == "landscape" || experiment_name == "covariate-shift")) {
      for (CLI::Option* o : {models_opt, stop_after_opt, resume_opt, recipe_opt}) {
        if (o->count() > 0) {
          throw std::invalid_argument(o->get_name() + " is for bn-only and bn-only-sweep, not " +
                                      experiment_name);
        }
      }
      wc.data = xc.data;
      if (model_opt->count() > 0) wc.model = xc.model;
      wc.variants = variants;
      wc.epochs = epochs_x_opt->count() > 0 ? xc.epochs : -1;
      if (out_opt->count() > 0) wc.out = xc.out;
      wc.seed = xc.seed;
      wc.threads = xc.threads;
      wc.limit_train = xc.limit_train;
      wc.limit_test = xc.limit_test;
      experiment_name == "landscape" ? run_landscape(wc) : run_covariate_shift(wc);
    } else if (*experiment) {
      for (CLI::Option* o : why_only) {
        if (o->count() > 0) {
          throw std::invalid_argument(o->get_name() +
                                      " is for landscape and covariate-shift, "
                                      "not " +
                                      experiment_name);
        }
      }
      if (variants_opt->count() > 0) {
        const auto& modes = minidl::optim::train_only_modes();
        for (const std::string& v : variants) {
          if (std::find(modes.begin(), modes.end(), v) == modes.end()) {
            throw std::invalid_argument("--variants: \"" + shown(v) + "\" is not one of " +
                                        choices_text(modes));
          }
        }
        xc.variants = variants;
      }
      const bool sweep = experiment_name == "bn-only-sweep";
      if (sweep && model_opt->count() > 0)
        throw std::invalid_argument("--model is for bn-only; bn-only-sweep takes --models");
      if (!sweep && models_opt->count() > 0)
        throw std::invalid_argument("--models is for bn-only-sweep; bn-only takes --model");
      sweep ? run_sweep(xc) : run_experiment(xc);
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "minidl: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
