// minidl — what a training run is: typed options (numbers and enums, no strings for choices) and
// the recipes, named presets of those options. The Trainer (train/trainer.hpp) runs them; the
// run directory (train/run_dir.hpp) saves and reads them as config.json.
//
// Recipes:
//   default      resnet20, 30 epochs, batch 128, SGD Nesterov momentum 0.9, lr 0.1 one-cycle
//                (15% warm-up), weight decay 5e-4, label smoothing 0.1, crop + flip.
//   frankle2021  the BN-only paper's recipe (Frankle, Schwab & Morcos, ICLR 2021, open_lth's
//                cifar_resnet defaults): SGD momentum 0.9 without Nesterov, lr 0.1 x0.1 at
//                epochs E/2 and 3E/4 (80 and 120 of 160), batch 128, weight decay 1e-4, crop +
//                flip, ImageNet mean/std, gamma ~ U[0, 1).
//   airbench94   Keller Jordan's airbench94 (arXiv 2404.00498, legacy/airbench94.py; see
//                airbench94_options below and docs/recipes.md).
//   bn-speedrun  BatchNorm's gamma and beta trained alone, on frozen random convolutions:
//                resnet110, 8 epochs, batch 64, Adam lr 0.1 one-cycle (see bn_speedrun_options
//                below and docs/bn-speedrun/).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/enum_names.hpp"
#include "core/ops.hpp"
#include "data/loader.hpp"
#include "layers/models/registry.hpp"
#include "optim/freeze.hpp"
#include "optim/schedule.hpp"

namespace minidl::train {

enum class Recipe { kDefault, kFrankle2021, kAirbench94, kBnSpeedrun };
const EnumTable<Recipe>& enum_table(Recipe);

/// sgd (optim/sgd.hpp), adam and adamw (optim/adam.hpp: L2 and decoupled weight decay).
enum class OptimizerKind { kSgd, kAdam, kAdamW };
const EnumTable<OptimizerKind>& enum_table(OptimizerKind);

/// BatchNorm's statistics while training. This freezes statistics, not parameters (that is
/// TrainOptions::train_only): batch = train-mode BN (normalize with each batch's statistics,
/// update the running ones); running = inference-mode BN (the running buffers normalize and are
/// never updated, as Keras does for a layer with trainable = False).
enum class BnStatsMode { kBatch, kRunning };
const EnumTable<BnStatsMode>& enum_table(BnStatsMode);

/// Data parallelism: BatchNorm's statistics over each process's slice of the batch (none, as
/// PyTorch's BatchNorm2d under DDP) or over the global batch (global: SyncBatchNorm,
/// layers/batch_norm.hpp). One process: the same either way.
enum class BnSync { kNone, kGlobal, kExact };
const EnumTable<BnSync>& enum_table(BnSync);

/// Data parallelism: how the gradients are summed over the processes. mpi: MPI_Allreduce (about
/// 2n values of traffic per process; for 3 or more processes the order of the additions is the
/// library's, so the last bits may differ between MPI versions or process counts); ordered: an
/// allgather and a sum in rank order (P x n values; bit-identical whatever MPI does). With 2
/// processes the two agree exactly (a + b = b + a).
enum class GradientReduction { kMpi, kOrdered };
const EnumTable<GradientReduction>& enum_table(GradientReduction);

/// Thrown for an option outside its range: `param` is the TrainOptions field ("batch_size"),
/// what() reads "batch_size must be >= 2 for BatchNorm training, got 1". The CLI maps `param`
/// to its flag.
struct OptionError : std::invalid_argument {
  OptionError(std::string param, const std::string& what)
      : std::invalid_argument(what), param(std::move(param)) {}
  std::string param;
};

/// Every setting of a training run. The defaults are the default recipe.
struct TrainOptions {
  Recipe recipe = Recipe::kDefault;
  std::string data;                ///< CIFAR-10 binary directory
  std::string model = "resnet20";  ///< a registered model name (layers/models/registry.hpp)
  /// Training length in epochs: a whole number except for airbench94 (9.9: the last epoch
  /// stops after ceil(9.9 x batches per epoch) steps in all).
  double epochs = 30;
  int64_t batch_size = 128;
  OptimizerKind optimizer = OptimizerKind::kSgd;
  float lr = 0.1f;  ///< peak learning rate (of the mean loss over the batch)
  float momentum = 0.9f;
  bool nesterov = true;
  /// L2 weight decay (sgd, adam) or decoupled (adamw), trainable parameters only.
  float weight_decay = 5e-4f;
  optim::ScheduleKind schedule = optim::ScheduleKind::kOneCycle;
  double warmup_epochs = -1.0;     ///< linear warm-up in epochs (fractions allowed); < 0: 15%
  std::vector<double> milestones;  ///< multistep: epochs where lr is multiplied by gamma
  float gamma = 0.1f;
  float label_smoothing = 0.1f;
  bool augment = true;  ///< augment_scheme on every training image
  data::AugmentScheme augment_scheme = data::AugmentScheme::kCropFlip;
  int translate = 2;  ///< kTranslateAlternatingFlip's largest shift in pixels (kCropFlip pads 4)
  /// Input normalization (data::normalization_named): cifar10 | imagenet. Saved in the
  /// checkpoint's metadata ("normalization"); eval and predict read it there.
  std::string normalize = "cifar10";
  uint64_t seed = 0;  ///< model init, data order, augmentation, random-per-channel masks
  int threads = 2;
  int64_t limit_train = -1;  ///< the first N training images (-1: all 50,000)
  int64_t limit_test = -1;   ///< the first N test images (-1: all 10,000)
  /// The run directory; empty: none (nothing is written: probes and tests).
  std::string out = "runs/latest";
  BnInit bn_init = BnInit::kFixed;
  /// The ResNets' normalization layer (ModelOptions::norm: bn, gn, ln, none) and GroupNorm's
  /// groups with gn; each saved in config.json only when not the default (bn, 32), and read
  /// back by --resume, eval and predict (the checkpoint's metadata holds config.json).
  NormKind norm = NormKind::kBatch;
  int64_t gn_groups = 32;
  optim::TrainOnly train_only = optim::TrainOnly::kAll;
  /// Keep the parameters the model itself freezes (airbench94's gammas and whitening weight)
  /// frozen; train_only then only freezes more. False: train_only decides every parameter.
  bool keep_model_frozen = false;
  BnStatsMode bn_stats = BnStatsMode::kBatch;

  // What the airbench94 recipe adds (the defaults leave each off).
  /// BatchNorm biases: lr x bn_bias_lr_scale and weight decay / bn_bias_lr_scale (the same decay
  /// per step), an optimizer parameter group; 1: no group.
  float bn_bias_lr_scale = 1.0f;
  /// Every N steps the weights and BN buffers are pulled to their EMA, and set to it after the
  /// last step (optim/lookahead.hpp); 0: no lookahead.
  int64_t lookahead_every = 0;
  /// Models with a patch-whitening stem (airbench94) set its weight from the first
  /// whitening_images training images (eps whitening_eps) and train its bias for the first
  /// whitening_bias_epochs epochs (-1: throughout).
  int64_t whitening_images = 5000;
  double whitening_eps = 5e-4;
  int64_t whitening_bias_epochs = -1;
  /// A ResNet's stem conv set, before the first step, from the patch whitening of the first
  /// whitening_images training images (CifarResNet::init_stem_whitening: the leading principal
  /// components of 3x3 patches and their negatives; eps whitening_eps): data-derived, so it is
  /// bn-speedrun's labelled variant, never its headline. Under train_only bn it then stays
  /// frozen like every conv. Saved in config.json only when true. Models other than resnet<D>
  /// [_W] are refused (OptionError naming stem_whitening).
  bool stem_whitening = false;
  /// Evaluate on the test set after every epoch (false: after the last one only).
  bool eval_every_epoch = true;
  int64_t eval_batch_size = 1000;
  /// Test-time augmentation of an extra final evaluation (train/loop.hpp, tta_logits); 0: none.
  int tta = 0;
  BnSync bn_sync = BnSync::kNone;                         ///< saved in config.json unless none
  GradientReduction reduction = GradientReduction::kMpi;  ///< saved only when ordered
  /// Ghost batches (BatchNorm::group_size): training statistics per group of this many
  /// consecutive images of each process's batch, the last group smaller when it does not divide
  /// the batch; 0: the whole batch. Saved in config.json only when > 0.
  int64_t bn_group_size = 0;
  /// Batch Renormalization (BatchNorm::renorm; Ioffe 2017, Algorithm 1) in every BatchNorm while
  /// training; false: plain BatchNorm. Combines with bn_group_size (renormalized ghost groups),
  /// not with bn_sync. Saved in config.json only when true.
  bool bn_renorm = false;
  float renorm_r_max = 3.0f;  ///< r_max after the ramp (the paper's 3)
  float renorm_d_max = 5.0f;  ///< d_max after the ramp (the paper's 5)
  /// The ramp, as fractions of the run's steps: r_max = 1 and d_max = 0 (plain BatchNorm) until
  /// renorm_ramp_start, then both relax linearly to their maxima at renorm_ramp_end. (The paper,
  /// on ImageNet: 5,000 steps fixed, r_max at 3 by step 40,000 and d_max at 5 by step 25,000.)
  double renorm_ramp_start = 0.05, renorm_ramp_end = 0.5;
  /// Save the training state after every epoch (train_state.safetensors: --resume); false: the
  /// checkpoint is written once, after the last epoch (airbench94, whose lookahead state is not
  /// saved).
  bool resumable = true;
};

/// The options of `recipe` (every field but data, seed, threads, limits and out at its value).
TrainOptions preset(Recipe recipe);
/// Batch Renorm's (r_max, d_max) at `step` of `total_steps` under o's ramp (o.bn_renorm set).
ops::BatchRenorm renorm_at(const TrainOptions& o, int64_t step, int64_t total_steps);
/// frankle2021 with its milestones at epochs/2 and 3 epochs/4.
TrainOptions frankle2021_options(int64_t epochs);
/// airbench94 at `batch_size` over `epochs`: the model airbench94 with its frozen gammas, SGD
/// Nesterov momentum 0.85, lr 11.5 and weight decay 0.0153 per 1,024 examples converted as
/// airbench94.py does (kilostep_scale = 1024 (1 + 1 / (1 - momentum)); lr = batch x 11.5 /
/// kilostep_scale for the mean loss; weight decay 0.0153 x batch / kilostep_scale / lr), BN
/// biases lr x64 with the same decay per step, the piecewise schedule, label smoothing 0.2,
/// 2-pixel reflect translation with the alternating flip, lookahead every 5 steps, whitening
/// from 5,000 images with its bias trained 3 epochs, test batches of 1024 (a multiple of the
/// Winograd kernels' 16 lanes), the test set evaluated after the last epoch, TTA level 2.
TrainOptions airbench94_options(int64_t batch_size = 1024, double epochs = 9.9);
/// bn-speedrun (issue 28): the highest CIFAR-10 accuracy with only BatchNorm's gamma and beta
/// trained, every conv and linear weight and bias frozen at its random init (train_only bn;
/// gamma starts at 1, beta at 0, BatchNorm normalizes with batch statistics while training).
/// The settings, each found by a probe of docs/bn-speedrun/README.md (its plan:
/// docs/bn-speedrun/PLAN.md): model resnet110 (B02, 12 epochs, 64.86% at seed 100, against B01's
/// resnet56 for 23 epochs, 62.05%: the deeper network at the same budget) for 8 epochs (the
/// epochs that fit the plan's 40-minute budget, with 16% to spare, at the 202 BN-only images/s
/// resnet110 trains at alone on the plan's 2-core Xeon; B02's 12 epochs came from a faster 259
/// images/s and take 50 minutes), batch 64 (A11), Adam at
/// peak lr 0.1 (A07) under the one-cycle schedule with its 15% linear warm-up (the default
/// schedule), no weight decay and no label smoothing (A02: neither was shown to help), no
/// augmentation (A09), input normalized with CIFAR-10's mean and std. Training is that of probe
/// B02 for 8 epochs (B02's command is in docs/bn-speedrun/probes.csv; it ran at seed 100): these
/// options differ from B02's only in epochs, recipe, out (runs/bn-speedrun) and
/// eval_every_epoch, false: the
/// test set (10,000 images, eval mode, batches of 1,000, no TTA) is evaluated after
/// the last epoch only, as the plan's budget counts it (evaluating does not change the
/// training). The settings are final (seeds 0, 1 and 2 ran on them); they live here only. The
/// model and epochs are for a caller to override (the 3-hour tier: resnet110, 36 epochs).
TrainOptions bn_speedrun_options();

/// Checks every range, and the combinations of norm with the BatchNorm-only settings (gn_groups
/// without norm gn; bn_stats running, bn_sync or bn_group_size with a norm other than bn;
/// train_only bn or bn+fc and bn_init uniform with norm none). Throws OptionError naming the
/// field.
void validate(const TrainOptions& o);

/// Whether the learning rate (or another setting) of a step depends on the run's length, so
/// that a run resumed with more epochs would not continue the schedule it trained with: the
/// onecycle, cosine and piecewise schedules, a warm-up given as a share of the run (warmup_epochs
/// < 0), Batch Renorm's ramp and lookahead's decay. constant and multistep with a warm-up in
/// epochs do not.
bool schedule_depends_on_length(const TrainOptions& o);

/// The model's settings from the run's: seed, bn_init, norm, gn_groups.
ModelOptions model_options(const TrainOptions& o);

}  // namespace minidl::train
