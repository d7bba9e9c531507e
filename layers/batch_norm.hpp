// minidl — BatchNorm1d and BatchNorm2d (torch.nn.BatchNorm1d / BatchNorm2d).
//
//   y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias        (Ioffe & Szegedy 2015, Alg. 1)
//
// Statistics are per feature / channel C: over N for [N, C] (BatchNorm1d), over N, H, W for
// [N, C, H, W] (BatchNorm2d).
// - train(): normalize with the batch mean and the biased batch variance, and update
//     running_mean = (1 - momentum) * running_mean + momentum * batch_mean
//     running_var  = (1 - momentum) * running_var  + momentum * unbiased_batch_var
//   This is PyTorch's momentum (default 0.1). Keras' BatchNormalization(momentum=0.99) is the
//   same rule written the other way round: keras_momentum = 1 - momentum.
//   A channel with a single value (BatchNorm1d, batch of one) is an error, as in PyTorch.
// - eval(): normalize with running_mean / running_var; each sample is then independent of
//   the rest of the batch, so one image gives the same output alone as inside a batch.
// Parameters (affine = true): weight = gamma [C] (init 1), bias = beta [C] (init 0).
// Buffers: running_mean [C] (init 0), running_var [C] (init 1).
// Freezing: weight/bias.set_requires_grad(false) freezes the parameters (no gradient);
//   eval() freezes the statistics. They are separate switches; Keras' trainable = False sets
//   both.
// Errors: std::invalid_argument for an input of the wrong rank or channel count.
#pragma once

#include <vector>

#include "layers/module.hpp"

namespace minidl {

class BatchNorm : public Module {
 public:
  /// spatial = false: BatchNorm1d ([N, C]); true: BatchNorm2d ([N, C, H, W]).
  BatchNorm(int64_t num_features, bool spatial, float eps = 1e-5f, float momentum = 0.1f,
            bool affine = true);
  Tensor forward(const Tensor& x) override;
  /// relu(forward(x)), fused into one op (ops::batch_norm_relu).
  Tensor forward_relu(const Tensor& x);
  /// relu(forward(x) + residual), fused into one op (ops::batch_norm_add_relu).
  Tensor forward_add_relu(const Tensor& x, const Tensor& residual);
  std::string type_name() const override { return spatial_ ? "BatchNorm2d" : "BatchNorm1d"; }
  Tensor weight, bias, running_mean, running_var;
  int64_t num_features;
  float eps, momentum;

  /// Per-channel sums of this layer's inputs, gathered while `observer` is set (see
  /// layers/recalibrate.hpp). sum, sum_sq [C] in double; count = values per channel.
  struct InputStats {
    std::vector<double> sum, sum_sq;
    int64_t count = 0;
  };
  InputStats* observer = nullptr;
  /// With an observer: stop the forward pass right after observing (recalibration needs no
  /// later layer). Thrown as StopForward.
  bool stop_after_observe = false;
  struct StopForward {};

 private:
  Tensor run(const Tensor& x, bool relu, const Tensor& residual);
  bool spatial_;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, float eps = 1e-5f, float momentum = 0.1f,
                       bool affine = true)
      : BatchNorm(num_features, false, eps, momentum, affine) {}
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, float eps = 1e-5f, float momentum = 0.1f,
                       bool affine = true)
      : BatchNorm(num_features, true, eps, momentum, affine) {}
};

}  // namespace minidl
