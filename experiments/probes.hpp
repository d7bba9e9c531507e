// minidl — probes of the optimization landscape and of internal covariate shift, after
// Santurkar, Tsipras, Ilyas & Madry, "How Does Batch Normalization Help Optimization?"
// (NeurIPS 2018; arXiv 1805.11604). Both are measurements taken in the middle of a training
// step (train/loop.hpp, StepHooks) that leave no trace: weights, gradients and buffers are
// restored bit for bit, the optimizer is never called and the data loader never touched.
//
// `loss_at` is a closure that runs the model's forward on the step's batch and returns the
// scalar loss (a graph to call backward() on). It is called in whatever mode the model is in
// (train mode during training, as in the paper).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "layers/module.hpp"

namespace minidl::experiments {

/// A copy of every parameter's value and gradient (if it has one) and of every buffer, in
/// named_parameters() / named_buffers() order, to put the model back exactly.
class ModelSnapshot {
 public:
  explicit ModelSnapshot(const Module& model);
  /// Copies the values, gradients (dropping those that were absent) and buffers back. Throws
  /// std::logic_error if `model` does not have the snapshot's tensors.
  void restore(Module& model) const;
  /// Values and gradients of parameter i (gradient undefined when it had none).
  const Tensor& value(size_t i) const { return values_[i]; }
  const Tensor& grad(size_t i) const { return grads_[i]; }
  size_t size() const { return values_.size(); }

 private:
  std::vector<Tensor> values_, grads_, buffers_;
};

/// One point of the landscape probe: the weights moved to w - eta * g.
struct LandscapePoint {
  double eta = 0.0;            ///< step size (same unit as the learning rate)
  double loss = 0.0;           ///< L(w - eta g) on the probe batch
  double grad_distance = 0.0;  ///< ||grad L(w - eta g) - g||_2
};

/// The landscape along the current gradient at the current weights (Santurkar et al., Section
/// 3.1 and Figure 4).
struct LandscapeProbe {
  double loss = 0.0;       ///< L(w), from the caller's forward (passed in)
  double grad_norm = 0.0;  ///< ||g||_2 over every trainable parameter that has a gradient
  std::vector<LandscapePoint> points;
  /// "Effective beta-smoothness": max over the points of ||grad L(w - eta g) - g|| / ||eta g||
  /// (0 when g = 0).
  double beta_smoothness = 0.0;
};

/// Probes L and its gradient at w - eta * g for every eta in `etas` (each > 0), where w are the
/// trainable parameters' current values and g their current .grad (the caller has just run
/// backward; parameters without a gradient stay put). `loss` is L(w), reported as is. Restores
/// the values, gradients and buffers before returning (also when loss_at throws).
LandscapeProbe probe_landscape(Module& model, double loss, const std::function<Tensor()>& loss_at,
                               const std::vector<double>& etas);

/// Internal covariate shift of one layer (Santurkar et al., Definition 2.1): G is the gradient
/// of the layer's weight at W^t = (W_1^t, ..., W_k^t); G' the gradient of the same weight, on
/// the same batch, at (W_1^{t+1}, ..., W_{i-1}^{t+1}, W_i^t, ..., W_k^t), i.e. after every
/// earlier parameter took its update and before this and later ones did.
struct CovariateShift {
  std::string name;        ///< the weight's state_dict name, e.g. "features.4.weight"
  double grad_norm = 0.0;  ///< ||G||_2
  double distance = 0.0;   ///< ||G - G'||_2
  double cosine = 1.0;     ///< <G, G'> / (||G|| ||G'||) (1 when either is 0)
};

/// Measures CovariateShift for each parameter named in `weights` (in forward order: earlier
/// parameters are those registered before it, named_parameters() order). `before` is a
/// ModelSnapshot taken after the step's backward and before its optimizer step (W^t and G);
/// the model holds W^{t+1}. The model is left as it was (values, gradients, buffers). Throws
/// std::invalid_argument for a name that is not a parameter with a gradient in `before`.
std::vector<CovariateShift> probe_covariate_shift(Module& model, const ModelSnapshot& before,
                                                  const std::function<Tensor()>& loss_at,
                                                  const std::vector<std::string>& weights);

/// Summary of a set of values: percentiles 5, 25, 50, 75, 95 (linear interpolation, numpy's
/// default), mean and standard deviation (population). All 0 for no values.
struct Distribution {
  double p5 = 0, p25 = 0, p50 = 0, p75 = 0, p95 = 0, mean = 0, std = 0;
};
Distribution distribution_of(std::vector<float> values);

}  // namespace minidl::experiments
