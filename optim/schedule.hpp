// minidl — learning-rate schedules, stepped once per batch. multistep and cosine are the
// torch.optim.lr_scheduler classes named; onecycle is not torch's OneCycleLR (see below).
//   constant:  lr(t) = base_lr
//   multistep: lr(t) = base_lr * gamma^(number of milestones <= t)          (MultiStepLR)
//   cosine:    lr(t) = base_lr * (1 + cos(pi * t / T)) / 2                    (CosineAnnealingLR,
//              eta_min 0; Loshchilov & Hutter 2017, eq. 5 without restarts)
//   onecycle:  a linear triangle: from 0 up to base_lr over the warm-up, then linearly down to 0
//              at T (the shape of Smith & Topin 2019's one-cycle policy without its final
//              annihilation phase or momentum cycling). torch.optim.lr_scheduler.OneCycleLR
//              differs: it starts at max_lr / 25, anneals with cosine by default, ends at
//              max_lr / 1e4 and cycles momentum.
// Any schedule may start with a linear warm-up over `warmup_steps`: lr is scaled by
// (t + 1) / warmup_steps for t < warmup_steps (Goyal et al. 2017, §2.2). t counts batches from 0;
// T = total_steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl::optim {

/// The schedule kinds, in the order help texts list them: constant, multistep, cosine, onecycle.
const std::vector<std::string>& schedule_kinds();

struct Schedule {
  std::string kind = "constant";  ///< constant | multistep | cosine | onecycle
  float base_lr = 0.1f;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;
  std::vector<int64_t> milestones;  ///< multistep: batch indices where lr is multiplied by gamma
  float gamma = 0.1f;

  /// Throws std::invalid_argument for a kind not in schedule_kinds(), total_steps < 1 or
  /// warmup_steps < 0.
  void validate() const;
  /// The learning rate for batch t (0-based).
  float lr(int64_t t) const;
};

}  // namespace minidl::optim
