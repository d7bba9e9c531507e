// minidl — learning-rate schedules, stepped once per batch. multistep and cosine are the
// torch.optim.lr_scheduler classes named; onecycle is not torch's OneCycleLR (see below).
//   constant:  lr(t) = base_lr
//   multistep: lr(t) = base_lr * gamma^(number of milestones <= t)          (MultiStepLR)
//   cosine:    lr(t) = base_lr * (1 + cos(pi * t / T)) / 2                    (CosineAnnealingLR,
//              eta_min 0; Loshchilov & Hutter 2017, eq. 5 without restarts)
//   onecycle:  a linear triangle: up over the warm-up, lr(t) = base_lr * (t + 1) / warmup_steps
//              for t < warmup_steps (so it starts at base_lr / warmup_steps, not at 0, and
//              reaches base_lr at t = warmup_steps - 1), then linearly down to 0 at T,
//              lr(t) = base_lr * (T - t) / (T - warmup_steps); without warm-up it starts at
//              base_lr (the shape of Smith & Topin 2019's one-cycle policy without its final
//              annihilation phase or momentum cycling). torch.optim.lr_scheduler.OneCycleLR
//              differs: it starts at max_lr / 25, anneals with cosine by default, ends at
//              max_lr / 1e4 and cycles momentum.
//   piecewise: lr(t) = base_lr * f(t), f linear between the `knots` (step t_i, factor f_i):
//              f(t) = f_i * (1 - frac) + f_{i+1} * frac, frac = (t - t_i) / (t_{i+1} - t_i)
//              for t_i <= t < t_{i+1}; f_0 before the first knot, the last factor from the last
//              knot on (np.interp's rule). airbench94's schedule (Keller Jordan, arXiv
//              2404.00498; legacy/airbench94.py, get_lr) is the knots
//              {(0, 0.2), (W, 1.0), (T, 0.07)} with W = int(0.23 * T): up from 0.2 to 1 over W
//              steps, then down to 0.07 at T.
// Any schedule may start with a linear warm-up over `warmup_steps`: lr is scaled by
// (t + 1) / warmup_steps for t < warmup_steps (Goyal et al. 2017, §2.2); for piecewise that
// multiplies f(t), which has its own ramp in the knots (airbench94 uses warmup_steps = 0).
// t counts batches from 0; T = total_steps.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/enum_names.hpp"

namespace minidl::optim {

/// The schedule kinds (names: constant, multistep, cosine, onecycle, piecewise).
enum class ScheduleKind { kConstant, kMultistep, kCosine, kOneCycle, kPiecewise };
/// ScheduleKind's names and descriptions, in the order help texts list them.
const EnumTable<ScheduleKind>& enum_table(ScheduleKind);

struct Schedule {
  ScheduleKind kind = ScheduleKind::kConstant;
  float base_lr = 0.1f;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;
  std::vector<int64_t> milestones;  ///< multistep: batch indices where lr is multiplied by gamma
  float gamma = 0.1f;
  /// piecewise: (batch index, factor of base_lr), steps strictly increasing. The factors are
  /// double so that the factor, computed in double as airbench94's Python does, then rounded
  /// once to float with base_lr, gives the same float lr as airbench at every step (float
  /// factors such as 0.2f, 0.07f differ from 0.2, 0.07 and change the last bit of about 2% of
  /// its learning rates).
  std::vector<std::pair<int64_t, double>> knots;

  /// Throws std::invalid_argument for total_steps < 1,
  /// warmup_steps < 0, and for piecewise: no knots, knot steps not strictly increasing, or a
  /// factor that is negative, infinite or NaN (the message names the knot).
  void validate() const;
  /// The learning rate for batch t (0-based).
  float lr(int64_t t) const;
  /// airbench94's piecewise schedule over total_steps T with base_lr (warmup_steps 0):
  /// knots {(0, 0.2), (W, 1.0), (T, 0.07)}, W = int(0.23 * T) (truncated, as Python's int).
  /// Throws std::invalid_argument for T < 5 (W would be 0, and the knot steps not increasing).
  static Schedule airbench94(int64_t total_steps, float base_lr);
};

}  // namespace minidl::optim
