// minidl — "Why BatchNorm works": the experiments of Santurkar, Tsipras, Ilyas & Madry, "How
// Does Batch Normalization Help Optimization?" (NeurIPS 2018), on a VGG-A for CIFAR-10 without
// BN, with BN and with noisy BN:
//   landscape        Section 3.1, Figure 4: loss and gradient along the current gradient.
//   covariate-shift  Section 2: accuracy of standard / BN / noisy-BN training (Figure 2), the
//                    distribution of one layer's pre-activations over training, and internal
//                    covariate shift per layer (Definition 2.1, Figure 5).
// Each run is experiments/probed_run.hpp's (plain SGD, constant lr). Results go to OUT/*.csv,
// OUT/config.json and OUT/results.md; the CLI draws the plots (scripts/plot_why_bn.py).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "experiments/probed_run.hpp"

namespace minidl::experiments {

struct WhyBnConfig {
  std::string data;  ///< CIFAR-10 binary directory
  std::string out;   ///< empty: runs/landscape or runs/covariate-shift
  /// The network without BN: vgg11 or vgg11_w<k>; the BN (vgg11_bn...) and noisy-BN
  /// (vgg11_noisybn...) networks are derived from it and share its initial conv weights.
  std::string model = "vgg11_w4";
  /// landscape: standard bn; covariate-shift: standard bn noisy-bn (any subset, in that order;
  /// empty: all)
  std::vector<std::string> variants;
  std::vector<float> lrs = {0.1f};  ///< one run per variant and learning rate
  int64_t epochs = -1;              ///< -1: 20 (landscape) or 15 (covariate-shift)
  int64_t batch_size = 128;
  float momentum = 0.0f, weight_decay = 0.0f;
  int64_t probes = 50;  ///< measurements spread evenly over each run
  /// landscape: step sizes as multiples of the run's lr
  std::vector<double> eta_factors = {0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0};
  int64_t layer = 3;  ///< covariate-shift: the conv block whose pre-activations are recorded
  uint64_t seed = 0;
  int threads = 2;
  int64_t limit_train = -1, limit_test = -1;
  /// Called at the end of every epoch of every run (label: "<variant> lr <lr>").
  std::function<void(const std::string& label, const ProbedRun::Epoch&)> on_epoch;
  /// Called when a run diverges (label, train_epoch's message); the experiment goes on.
  std::function<void(const std::string& label, const std::string& why)> on_diverged;
};

/// What an experiment wrote.
struct WhyBnReport {
  std::string out;       ///< the folder
  std::string markdown;  ///< OUT/results.md's text
};

/// Trains each variant at each lr with landscape probes; writes OUT/config.json,
/// OUT/metrics.csv, OUT/landscape.csv (one row per probe and step size), OUT/smoothness.csv (one
/// row per probe) and OUT/results.md. Throws std::invalid_argument naming the field (model,
/// variants, lrs, epochs, batch_size, probes, eta_factors) for a bad setting.
WhyBnReport run_landscape(WhyBnConfig cfg);
/// Trains each variant at each lr with covariate-shift and activation probes; writes
/// OUT/config.json, OUT/metrics.csv, OUT/activations.csv, OUT/covariate_shift.csv and
/// OUT/results.md. Throws std::invalid_argument naming the field (as run_landscape, and layer).
WhyBnReport run_covariate_shift(WhyBnConfig cfg);

}  // namespace minidl::experiments
