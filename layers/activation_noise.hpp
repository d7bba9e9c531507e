// minidl — ActivationNoise: the "noisy BatchNorm" of Santurkar, Tsipras, Ilyas & Madry, "How Does
// Batch Normalization Help Optimization?" (NeurIPS 2018, Section 2.1 and Appendix), placed right
// after a BatchNorm layer to give its outputs a distribution that moves at every step.
//
//   y[n, c, h, w] = scale[c] * x[n, c, h, w] + noise[n, c, h, w]
//   noise[n, c, h, w] = shift[c] + noise_std[c] * z, z i.i.d. over n, h, w with mean 0 and
//   variance 1: an Irwin-Hall draw (the centred, scaled sum of 4 uniforms), a bell shape on
//   [-3.46, 3.46] close to a standard normal, so noise has mean shift[c] and std noise_std[c]
//
// At every training-mode forward the layer draws new per-channel parameters
//   scale[c] ~ U[scale_lo, scale_hi),  shift[c] ~ U[-shift_max, shift_max),
//   noise_std[c] ~ U[std_lo, std_hi)
// and a new noise tensor, so each step sees a different, non-zero-mean, non-unit-variance
// perturbation of every activation of every sample (the paper's "time-varying, non-zero mean and
// non-unit variance noise"; the paper does not give its distributions, these are minidl's, see
// ActivationNoiseOptions). In eval mode the layer is the identity.
//
// hold = true makes a training-mode forward reuse the last drawn scale and noise instead of
// drawing (the covariate-shift experiment recomputes a step's gradient with the step's noise).
//
// Backward: dx = scale[c] * dy (the noise is a constant).
// Shape: [N, C, H, W] or [N, C] -> same shape. Errors: std::invalid_argument for another rank or
// a channel count other than num_features; std::logic_error for hold before any draw when the
// shape changed.
// Randomness: a Generator of its own, seeded at construction, draws the per-channel values and
// a 64-bit key per forward; the noise tensor comes from the key through splitmix64 as a
// counter, so it is the same for any thread count. The stream is not saved in
// checkpoints: a resumed run draws different noise than an uninterrupted one would.
#pragma once

#include <vector>

#include "layers/module.hpp"

namespace minidl {

/// The noise distributions of ActivationNoise (defaults: minidl's choice for the
/// covariate-shift experiment, documented in the README's "Why BatchNorm works").
struct ActivationNoiseOptions {
  float scale_lo = 0.5f, scale_hi = 1.5f;  ///< multiplicative factor per channel and step
  float shift_max = 0.5f;                  ///< |mean| of the additive noise, per channel and step
  float std_lo = 0.25f, std_hi = 0.75f;    ///< std of the additive noise, per channel and step
};

class ActivationNoise : public Module {
 public:
  /// Throws std::invalid_argument for num_features < 1 or an empty/negative range.
  ActivationNoise(int64_t num_features, uint64_t seed, ActivationNoiseOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ActivationNoise"; }
  int64_t num_features;
  ActivationNoiseOptions options;
  bool hold = false;
  /// The last drawn per-channel factors [C] and noise (shape of the last input).
  const std::vector<float>& scale() const { return scale_; }
  const Tensor& noise() const { return noise_; }

 private:
  Generator gen_;
  std::vector<float> scale_;
  Tensor noise_;
};

}  // namespace minidl
