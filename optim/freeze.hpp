// minidl — choosing which parameters learn (`minidl train --train-only`).
//
// Freezing a parameter sets requires_grad = false: it gets no gradient (the conv's and linear's
// weight-gradient GEMM is skipped), no weight decay, and keeps its value bit for bit. This is
// one switch; freezing BatchNorm's *statistics* (eval-mode BN) is another, separate one
// (`--bn-stats running`). Keras' `trainable = False` sets both.
//
// Modes (Frankle, Schwab & Morcos, "Training BatchNorm and Only BatchNorm", ICLR 2021):
//   all                 every parameter learns
//   bn                  every BatchNorm weight (gamma) and bias (beta), nothing else — the
//                       output layer is frozen too. In a model with GroupNorm or LayerNorm
//                       layers (a ResNet built with --norm gn or ln), their weight and bias: the
//                       normalization's gamma and beta, whatever the normalization
//   fc                  the final Linear only (random features, trained readout)
//   bn+fc               both of the above
//   random-per-channel  the paper's control: instead of BN, two randomly chosen weights per
//                       output channel of every convolution learn (as many as BN's gamma and
//                       beta when each conv feeds a BN); BN parameters and the output layer stay
//                       at their init
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/enum_names.hpp"
#include "layers/module.hpp"

namespace minidl::optim {

/// An element mask for a partly trainable parameter: only elements with mask[i] = 1 change.
struct UpdateMask {
  Tensor param;
  std::vector<uint8_t> mask;
};

/// Which parameters learn (names: all, bn, fc, bn+fc, random-per-channel; see above).
enum class TrainOnly { kAll, kBn, kFc, kBnFc, kRandomPerChannel };
const EnumTable<TrainOnly>& enum_table(TrainOnly);

/// Sets requires_grad on every parameter of `model` for `mode` and returns the element masks
/// (only random-per-channel has any), drawn from `seed`. Throws std::invalid_argument for a
/// model without the layers the mode names.
std::vector<UpdateMask> apply_train_only(Module& model, TrainOnly mode, uint64_t seed);

/// Number of parameter elements that learn, given the masks from apply_train_only.
int64_t count_trainable(const Module& model, const std::vector<UpdateMask>& masks);

}  // namespace minidl::optim
