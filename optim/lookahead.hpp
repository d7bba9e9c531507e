// minidl — Lookahead with an exponential moving average of the weights, as airbench94 uses it
// (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv 2404.00498;
// LookaheadState in KellerJordan/cifar10-airbench, legacy/airbench94.py). It is Lookahead
// (Zhang et al. 2019) whose slow weights are an EMA of the fast ones, on a schedule.
//
// The object keeps a copy `ema` of every tensor of model.state_dict(): the parameters *and* the
// buffers (BatchNorm's running_mean and running_var); torch averages the floating-point ones,
// which in minidl are all of them (float32). Every update(model, decay) does, per element,
//   ema = lerp(ema, net, 1 - decay)    = ema + (1 - decay) * (net - ema)
//   net = ema
// so the training continues from the averaged weights ("lookahead"), and the optimizer's state
// (momentum) is left as it is.
//
// The recipe (airbench94's training loop), with T = total optimizer steps and s the number of
// optimizer steps done (1-based: s = 1 right after the first step):
//   Lookahead la(model);                        // before training, after initialization
//   ... after each optimizer step, s += 1:
//     if (s % 5 == 0) la.update(model, Lookahead::decay(s, T));
//     if (s == T) la.update(model, 1.0f);     // the end: net = ema, the EMA of the last update
// decay(s, T) = 0.95^5 * (s / T)^3 grows from 0 (early on the EMA is the net: plain training)
// to 0.95^5 ~ 0.774 at the end (a 5-step update keeping 0.95 per step of the old average).
// (airbench94 makes its LookaheadState just before the whitening conv's data-dependent init;
// the first update, decay(5, T) ~ 1e-6 for T = 476, all but replaces that copy.)
#pragma once

#include <cstdint>

#include "layers/module.hpp"

namespace minidl::optim {

class Lookahead {
 public:
  /// Copies (clone(), not shares) every tensor of model.state_dict(), in its order, as the
  /// initial EMA.
  explicit Lookahead(const Module& model);

  /// For every tensor of model.state_dict() (any shapes), with w = 1 - decay:
  ///   ema = w < 0.5 ? ema + w * (net - ema) : net - (net - ema) * (1 - w);   net = ema
  /// This is torch.Tensor.lerp_(net, w) (ATen's native/Lerp.h; the two branches, from PyTorch
  /// PR 18871, make w = 0 keep ema and w = 1 give net exactly), evaluated in float32 with w
  /// rounded to float from the double 1 - decay, as torch rounds a Python float weight.
  /// (torch's vectorized CPU kernel fuses the multiply-add, so a torch build with FMA can
  /// differ from this in the last bit.) The model's tensors are written in place: optimizers
  /// and anything else holding them keep pointing at the same tensors. decay = 1 sets
  /// net = ema (ema unchanged); decay = 0 sets ema = net (net unchanged).
  /// Throws std::invalid_argument, before changing anything, when decay is not in [0, 1]
  /// (or NaN), or when the model's state_dict() does not have the same names, in the same
  /// order, and shapes as at construction (the message names the tensor).
  void update(Module& model, float decay);

  /// airbench94's decay schedule: 0.95^5 * (step / total_steps)^3, computed in float32 as
  /// torch does for 0.95**5 * (torch.arange(total_steps + 1) / total_steps)**3 (step /
  /// total_steps rounded to float, cubed as x * x * x, times 0.95^5 rounded to float).
  /// decay(0, T) = 0, decay(T, T) = 0.95^5 = 0.7737809375 (as float), decay(T / 2, T) = that / 8.
  /// Throws std::invalid_argument for total_steps < 1 or step outside [0, total_steps].
  static float decay(int64_t step, int64_t total_steps);

  /// The EMA tensors, named and ordered as model.state_dict() (for saving, e.g. with
  /// core/safetensors.hpp). Shared handles: update() changes their values.
  const NamedTensors& ema() const { return ema_; }

 private:
  NamedTensors ema_;
};

}  // namespace minidl::optim
