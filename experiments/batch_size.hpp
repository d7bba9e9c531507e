// minidl — `experiment batch-size`: how BatchNorm depends on the number of images that share its
// statistics, and what the alternatives do (issue 29; Wu & He, "Group Normalization", ECCV 2018,
// Figure 1). The global batch stays at 128 images: only the normalization changes.
//
// Cells (one run directory each, OUT/<cell>/):
//   bn-G       BatchNorm over ghost groups of G images (--bn-group-size G; G = 128: the whole
//              batch, which is also what synchronized BN over 128/G processes computes)
//   renorm-G   Batch Renormalization over ghost groups of G images (--bn-renorm)
//   gn, ln     GroupNorm and LayerNorm (= GroupNorm with one group): no batch dependence, one run
//              each, drawn as flat lines
// For each cell: test accuracy in eval mode (running statistics; what `minidl eval` prints) and
// in train mode (statistics of groups of G test images, batches of 128), and their gap.
//
// Every cell is an ordinary run directory trained by the Trainer; the tables are computed from
// those directories, so an experiment split by stop_after and continued with resume gives the
// same tables.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/trainer.hpp"

namespace minidl::experiments {

struct BatchSizeConfig {
  std::string data;  ///< CIFAR-10 binary directory
  std::string out = "runs/batch-size";
  std::string model = "resnet20";  ///< a CIFAR ResNet (resnet<D>[_<W>]): only they take gn and ln
  int64_t epochs = 5;              ///< per cell; the default recipe compressed to this length
  int64_t batch_size = 128;        ///< the global batch, fixed
  /// Images that share BatchNorm's statistics; each must divide batch_size.
  std::vector<int64_t> groups = {2, 4, 8, 16, 32, 128};
  int64_t gn_groups = 8;  ///< GroupNorm's groups (resnet20's 16, 32, 64 channels: 2, 4, 8 each)
  uint64_t seed = 0;
  int threads = 2;
  int64_t limit_train = -1, limit_test = -1;
  /// Train at most this many epochs in this call, summed over cells; -1: no limit. Continue
  /// with `resume`.
  int64_t stop_after = -1;
  /// Continue in `out`: finished cells are kept, a partial one continues from its last epoch.
  bool resume = false;
  train::Callbacks callbacks;  ///< passed to every cell's Trainer
  /// Before each cell trains: (cell name, epochs already done).
  std::function<void(const std::string&, int64_t)> on_cell_start;
};

/// One cell of the experiment: its name (bn-8, renorm-8, gn, ln) and its training options.
struct BatchSizeCell {
  std::string name;
  std::string norm;   ///< "bn", "renorm", "gn" or "ln"
  int64_t group = 0;  ///< images sharing statistics in training (bn, renorm); 0: n/a
  train::TrainOptions options;
};

/// The cells of `cfg`, in training order. Throws std::invalid_argument naming the field
/// (groups, epochs, batch_size, stop_after) for a bad setting.
std::vector<BatchSizeCell> batch_size_cells(const BatchSizeConfig& cfg);

struct BatchSizeReport {
  bool finished = false;  ///< false: stop_after ran out first (no table was written)
  std::string markdown;   ///< results.md's text
};

/// Trains every cell not yet finished, then writes OUT/results.csv and OUT/results.md (plots:
/// scripts/plot_batch_size.py). Throws std::runtime_error when a cell's folder already holds a
/// run and `resume` is not set, or holds a run with other settings.
BatchSizeReport run_batch_size(const BatchSizeConfig& cfg);

}  // namespace minidl::experiments
