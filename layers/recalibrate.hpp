// minidl — exact population statistics for BatchNorm (Ioffe & Szegedy 2015, Algorithm 2,
// steps 8-11: E[x] and Var[x] = m / (m - 1) * E_B[sigma_B^2] over the training data, used by
// the inference network).
//
// recalibrate_batch_norm sets every BN layer's running_mean and running_var to the exact mean
// and unbiased variance of that layer's input over all the images `for_each_batch` yields,
// computed in inference mode and layer after layer: BN l is measured with BN 1 .. l-1 already
// recalibrated, so the statistics are those the inference network actually sees. Each layer
// costs one pass over the data, cut short right after that layer.
#pragma once

#include <functional>

#include "layers/module.hpp"

namespace minidl {

/// Calls its argument once per batch of images [B, C, H, W] (the whole dataset, no augmentation).
using BatchSource = std::function<void(const std::function<void(const Tensor&)>& visit)>;

/// Recalibrates every BatchNorm of `model` (see above). Leaves the model in eval mode. Returns
/// the number of BN layers. Throws std::invalid_argument when the data gives a layer fewer than
/// two values per channel.
int recalibrate_batch_norm(Module& model, const BatchSource& for_each_batch);

}  // namespace minidl
