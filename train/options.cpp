#include "train/options.hpp"

#include <algorithm>

#include <cmath>

namespace minidl::train {

const EnumTable<Recipe>& enum_table(Recipe) {
  static const EnumTable<Recipe> t = {
      {Recipe::kDefault, "default", "resnet20, one-cycle SGD, 30 epochs"},
      {Recipe::kFrankle2021, "frankle2021", "the BN-only paper's (open_lth's) recipe"},
      {Recipe::kAirbench94, "airbench94", "Keller Jordan's 94% recipe, every setting fixed"},
      {Recipe::kBnSpeedrun, "bn-speedrun",
       "only BatchNorm trained: resnet110, 8 epochs, Adam lr 0.1 (docs/bn-speedrun/)"}};
  return t;
}

const EnumTable<OptimizerKind>& enum_table(OptimizerKind) {
  static const EnumTable<OptimizerKind> t = {
      {OptimizerKind::kSgd, "sgd", "SGD with momentum"},
      {OptimizerKind::kAdam, "adam", "Adam, L2 weight decay"},
      {OptimizerKind::kAdamW, "adamw", "Adam, decoupled weight decay"}};
  return t;
}

const EnumTable<BnStatsMode>& enum_table(BnStatsMode) {
  static const EnumTable<BnStatsMode> t = {
      {BnStatsMode::kBatch, "batch", "train-mode BN"},
      {BnStatsMode::kRunning, "running", "inference-mode BN, as Keras trainable=False"}};
  return t;
}

const EnumTable<BnSync>& enum_table(BnSync) {
  static const EnumTable<BnSync> t = {
      {BnSync::kNone, "none", "each process normalizes its own slice of the batch"},
      {BnSync::kGlobal, "global", "synchronized statistics over the global batch"},
      {BnSync::kExact, "exact",
       "global statistics reduced image by image in global order: the same bits on any number "
       "of processes, one included"}};
  return t;
}

const EnumTable<GradientReduction>& enum_table(GradientReduction) {
  static const EnumTable<GradientReduction> t = {
      {GradientReduction::kMpi, "mpi", "MPI_Allreduce"},
      {GradientReduction::kOrdered, "ordered", "allgather and sum in rank order"}};
  return t;
}

TrainOptions preset(Recipe recipe) {
  switch (recipe) {
    case Recipe::kFrankle2021:
      return frankle2021_options(160);
    case Recipe::kAirbench94:
      return airbench94_options();
    case Recipe::kBnSpeedrun:
      return bn_speedrun_options();
    case Recipe::kDefault:
      break;
  }
  return TrainOptions{};
}

TrainOptions frankle2021_options(int64_t epochs) {
  TrainOptions c;
  c.recipe = Recipe::kFrankle2021;
  c.epochs = static_cast<double>(epochs);
  c.optimizer = OptimizerKind::kSgd;
  c.momentum = 0.9f;
  c.nesterov = false;
  c.lr = 0.1f;
  c.schedule = optim::ScheduleKind::kMultistep;
  c.milestones = {epochs * 80.0 / 160.0, epochs * 120.0 / 160.0};
  c.gamma = 0.1f;
  c.batch_size = 128;
  c.weight_decay = 1e-4f;
  c.warmup_epochs = 0;
  c.label_smoothing = 0.0f;
  c.augment = true;
  c.bn_init = BnInit::kUniform;
  c.normalize = "imagenet";
  return c;
}

TrainOptions airbench94_options(int64_t batch_size, double epochs) {
  constexpr double kLrPer1024 = 11.5, kWeightDecayPer1024 = 0.0153, kMomentum = 0.85;
  TrainOptions c;
  c.recipe = Recipe::kAirbench94;
  c.model = "airbench94";
  c.out = "runs/airbench94";
  c.epochs = epochs;
  c.batch_size = batch_size;
  const double bs = static_cast<double>(batch_size);
  const double kilostep_scale = 1024.0 * (1.0 + 1.0 / (1.0 - kMomentum));
  const double decay_per_step = kWeightDecayPer1024 * bs / kilostep_scale;
  const double lr = kLrPer1024 / kilostep_scale * bs;  // for the mean loss
  c.optimizer = OptimizerKind::kSgd;
  c.lr = static_cast<float>(lr);
  c.momentum = static_cast<float>(kMomentum);
  c.nesterov = true;
  c.weight_decay = static_cast<float>(decay_per_step / lr);
  c.bn_bias_lr_scale = 64.0f;
  c.schedule = optim::ScheduleKind::kPiecewise;
  c.warmup_epochs = 0;
  c.label_smoothing = 0.2f;
  c.augment = true;
  c.augment_scheme = data::AugmentScheme::kTranslateAlternatingFlip;
  c.translate = 2;
  c.normalize = "cifar10";
  c.keep_model_frozen = true;
  c.lookahead_every = 5;
  c.whitening_images = 5000;
  c.whitening_eps = 5e-4;
  c.whitening_bias_epochs = 3;
  c.eval_every_epoch = false;
  c.eval_batch_size = 1024;
  c.tta = 2;
  c.resumable = false;
  return c;
}

TrainOptions bn_speedrun_options() {
  TrainOptions c;  // every field not set here is the default recipe's, as in probe B02
  c.recipe = Recipe::kBnSpeedrun;
  c.out = "runs/bn-speedrun";
  c.train_only = optim::TrainOnly::kBn;  // every probe
  c.model = "resnet110";                 // B02 (B01: resnet56, 23 epochs, 2.81 points below)
  c.epochs = 8;       // the 40-minute budget at the 202 images/s measured alone, with a 16% margin
  c.batch_size = 64;  // A11
  c.optimizer = OptimizerKind::kAdam;  // A07
  c.lr = 0.1f;                         // A07
  c.schedule = optim::ScheduleKind::kOneCycle;
  c.warmup_epochs = -1;        // 15% of the run
  c.weight_decay = 0.0f;       // A02
  c.label_smoothing = 0.0f;    // A02
  c.augment = false;           // A09
  c.bn_init = BnInit::kFixed;  // A10: gamma 0 on the residual branches did not win
  c.bn_stats = BnStatsMode::kBatch;
  c.normalize = "cifar10";
  c.eval_every_epoch = false;  // the budget counts one test pass
  return c;
}

void validate(const TrainOptions& o) {
  auto bad = [](const char* param, const std::string& what) {
    throw OptionError(param, std::string(param) + " " + what);
  };
  auto num = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return std::string(b);
  };
  if (!(o.epochs > 0) || !(o.epochs <= 100000))
    bad("epochs", "must be > 0 and <= 100000, got " + num(o.epochs));
  if (o.recipe != Recipe::kAirbench94 && o.epochs != std::floor(o.epochs))
    bad("epochs", "must be a whole number, got " + num(o.epochs));
  if (o.batch_size < 2)
    bad("batch_size", "must be >= 2 for BatchNorm training, got " + std::to_string(o.batch_size));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) bad("lr", "must be > 0, got " + num(o.lr));
  if (!(o.momentum >= 0 && o.momentum < 1)) bad("momentum", "must be in [0, 1)");
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) bad("weight_decay", "must be >= 0");
  if (!(o.label_smoothing >= 0 && o.label_smoothing < 1))
    bad("label_smoothing", "must be in [0, 1)");
  if (o.threads < 1) bad("threads", "must be >= 1");
  if (o.limit_train == 0 || o.limit_train < -1) bad("limit_train", "must be >= 1");
  if (o.limit_test == 0 || o.limit_test < -1) bad("limit_test", "must be >= 1");
  if (o.tta < 0 || o.tta > 2) bad("tta", "must be 0, 1 or 2, got " + std::to_string(o.tta));
  if (o.eval_batch_size < 1) bad("eval_batch_size", "must be >= 1");
  if (o.bn_group_size < 0) bad("bn_group_size", "must be >= 0");
  if (o.bn_group_size > 0 && o.bn_sync != BnSync::kNone)
    bad("bn_group_size", "and bn_sync " + name_of(o.bn_sync) +
                             " exclude each other (synchronized: the whole batch)");
  if (o.bn_renorm) {
    if (o.bn_sync != BnSync::kNone)
      bad("bn_renorm", "and bn_sync " + name_of(o.bn_sync) + " exclude each other");
    if (!(o.renorm_r_max >= 1.0f && o.renorm_r_max <= 1e6f))
      bad("renorm_r_max", "must be a number >= 1, got " + std::to_string(o.renorm_r_max));
    if (!(o.renorm_d_max >= 0.0f && o.renorm_d_max <= 1e6f))
      bad("renorm_d_max", "must be a number >= 0, got " + std::to_string(o.renorm_d_max));
    if (!(o.renorm_ramp_start >= 0 && o.renorm_ramp_start <= o.renorm_ramp_end &&
          o.renorm_ramp_end <= 1))
      bad("renorm_ramp", "must be two fractions of the run, 0 <= start <= end <= 1");
    if (o.norm != NormKind::kBatch)
      bad("bn_renorm", "renormalizes BatchNorm, but norm " + name_of(o.norm) + " has no BatchNorm");
  }
  if (o.gn_groups < 1 || o.gn_groups > 65536)
    bad("gn_groups", "must be from 1 to 65536, got " + std::to_string(o.gn_groups));
  if (o.gn_groups != ModelOptions{}.gn_groups && o.norm != NormKind::kGroup)
    bad("gn_groups", "sets GroupNorm's groups: it takes norm gn, got norm " + name_of(o.norm));
  if (o.norm != NormKind::kBatch) {
    const std::string why = "norm " + name_of(o.norm) +
                            (o.norm == NormKind::kNone ? " has no normalization layer"
                                                       : " has no batch statistics (GroupNorm)");
    if (o.bn_stats != BnStatsMode::kBatch)
      bad("bn_stats", name_of(o.bn_stats) + " sets BatchNorm's statistics, but " + why);
    if (o.bn_sync != BnSync::kNone)
      bad("bn_sync", name_of(o.bn_sync) + " synchronizes BatchNorm's statistics, but " + why);
    if (o.bn_group_size > 0) bad("bn_group_size", "sets BatchNorm's ghost batches, but " + why);
  }
  if (o.norm == NormKind::kNone) {
    if (o.train_only == optim::TrainOnly::kBn || o.train_only == optim::TrainOnly::kBnFc)
      bad("train_only", name_of(o.train_only) +
                            " trains the normalization layers' gamma and beta, but norm none "
                            "has none");
    if (o.bn_init != BnInit::kFixed)
      bad("bn_init",
          name_of(o.bn_init) + " sets the normalization layers' gamma, but norm none has none");
  }
  if (o.schedule == optim::ScheduleKind::kPiecewise && o.recipe != Recipe::kAirbench94)
    bad("schedule", "piecewise is airbench94's (its knots are set by the recipe)");
  data::normalization_named(o.normalize, "normalize");
}

ops::BatchRenorm renorm_at(const TrainOptions& o, int64_t step, int64_t total_steps) {
  const double t = total_steps > 0 ? static_cast<double>(step) / total_steps : 1.0;
  const double span = o.renorm_ramp_end - o.renorm_ramp_start;
  const double f = span > 0 ? std::clamp((t - o.renorm_ramp_start) / span, 0.0, 1.0)
                            : (t >= o.renorm_ramp_start ? 1.0 : 0.0);
  return {static_cast<float>(1.0 + (o.renorm_r_max - 1.0) * f),
          static_cast<float>(o.renorm_d_max * f)};
}

bool schedule_depends_on_length(const TrainOptions& o) {
  const bool by_steps =
      o.schedule != optim::ScheduleKind::kConstant && o.schedule != optim::ScheduleKind::kMultistep;
  return by_steps || o.warmup_epochs < 0 || o.bn_renorm || o.lookahead_every > 0;
}

ModelOptions model_options(const TrainOptions& o) {
  ModelOptions mo;
  mo.seed = o.seed;
  mo.bn_init = o.bn_init;
  mo.norm = o.norm;
  mo.gn_groups = o.gn_groups;
  return mo;
}

}  // namespace minidl::train
