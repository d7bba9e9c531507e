// minidl — the "why BatchNorm works" experiments (Santurkar, Tsipras, Ilyas & Madry, "How Does
// Batch Normalization Help Optimization?", NeurIPS 2018): a training run (the Trainer,
// train/trainer.hpp) with probes (experiments/probes.hpp) taken every few steps, used by the
// landscape and covariate-shift experiments (experiments/why_bn.hpp).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "experiments/probes.hpp"
#include "data/cifar10.hpp"
#include "optim/optimizer.hpp"

namespace minidl::experiments {

/// One training run of the experiments: plain SGD (momentum and weight decay 0 by default, so
/// the step is exactly -lr * g, the direction the landscape probe explores), constant lr,
/// cross-entropy without label smoothing, every parameter trained, BN in train mode,
/// RandomCrop + flip, CIFAR-10 normalization.
struct ProbedRunConfig {
  std::string model = "vgg11_w4";
  float lr = 0.1f, momentum = 0.0f, weight_decay = 0.0f;
  int64_t epochs = 1, batch_size = 128;
  uint64_t seed = 0;  ///< model init, data order, augmentation (and the noise of noisy BN)
  bool augment = true;
  /// Probe at steps 0, probe_every, 2 * probe_every, ... (0: never).
  int64_t probe_every = 0;
  /// Landscape probe (probe_landscape) at these absolute step sizes (empty: none).
  std::vector<double> etas;
  /// Covariate-shift probe (probe_covariate_shift) of every conv and linear weight.
  bool covariate_shift = false;
  /// VGG models: record the distribution of the input of the ReLU at this index of `features`
  /// (the pre-activation of a conv block) on the step's batch (-1: none).
  int64_t activation_index = -1;
  std::string label;  ///< names the run in reports (e.g. "bn lr 0.1")
};

/// What a ProbedRun measured; epochs and probes in the order they happened.
struct ProbedRun {
  std::shared_ptr<Module> model;
  std::shared_ptr<optim::Optimizer> opt;
  struct Epoch {
    int64_t epoch = 0;  ///< 1-based
    double train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0, seconds = 0;
  };
  std::vector<Epoch> epochs;
  std::vector<std::pair<int64_t, LandscapeProbe>> landscape;           ///< (step, probe)
  std::vector<std::pair<int64_t, std::vector<CovariateShift>>> shift;  ///< (step, per weight)
  std::vector<std::pair<int64_t, Distribution>> activations;           ///< (step, values)
  std::vector<int32_t> labels_seen;  ///< every training label, in the order the steps saw them
  std::string diverged;              ///< the Diverged message; empty when training finished
  int64_t steps_per_epoch = 0;
  double seconds = 0.0;  ///< wall time, probes included
};

/// Trains cfg.model on `train` (evaluating on `test` after every epoch when it is not null),
/// probing as configured. A divergence (train/loop.hpp, Diverged) ends the run early and is
/// reported in `diverged`, not thrown. `on_epoch` (may be empty) sees each epoch's row as it
/// ends. Throws std::invalid_argument for a bad configuration (unknown model, activation_index
/// that is not a ReLU of a VGG's features, lr <= 0).
ProbedRun train_probed(const ProbedRunConfig& cfg, const data::Dataset& train,
                       const data::Dataset* test,
                       const std::function<void(const ProbedRun::Epoch&)>& on_epoch = {});

/// The state_dict names of every Conv2d and Linear weight of `model`, in forward order.
std::vector<std::string> layer_weight_names(Module& model);

/// Index in a VGG's `features` of the ReLU of conv block `block` (1-based: block 1 follows
/// features.0). Throws std::invalid_argument naming `layer` when the model is not a VGG or
/// has fewer blocks.
int64_t vgg_relu_index(Module& model, int64_t block);

}  // namespace minidl::experiments
