#include "optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace minidl::optim {

const std::vector<std::string>& schedule_kinds() {
  static const std::vector<std::string> kinds = {"constant", "multistep", "cosine", "onecycle"};
  return kinds;
}

void Schedule::validate() const {
  if (std::find(schedule_kinds().begin(), schedule_kinds().end(), kind) == schedule_kinds().end()) {
    std::string list;
    for (const std::string& k : schedule_kinds()) list += (list.empty() ? "" : ", ") + k;
    throw std::invalid_argument("the schedule must be one of " + list + ", got \"" + kind + "\"");
  }
  if (total_steps < 1) throw std::invalid_argument("the schedule needs total_steps >= 1");
  if (warmup_steps < 0) throw std::invalid_argument("the schedule's warmup_steps must be >= 0");
}

float Schedule::lr(int64_t t) const {
  const double T = static_cast<double>(total_steps);
  double f = 1.0;
  if (kind == "multistep") {
    for (int64_t m : milestones) f *= (t >= m) ? gamma : 1.0;
  } else if (kind == "cosine") {
    f = 0.5 * (1.0 + std::cos(M_PI * std::min<double>(t, T) / T));
  } else if (kind == "onecycle") {
    const double peak = std::max<int64_t>(warmup_steps, 1);
    if (t < warmup_steps) return static_cast<float>(base_lr * (t + 1) / peak);
    f = std::max(0.0, (T - t) / std::max(1.0, T - warmup_steps));
    return static_cast<float>(base_lr * f);
  }
  if (t < warmup_steps) f *= static_cast<double>(t + 1) / static_cast<double>(warmup_steps);
  return static_cast<float>(base_lr * f);
}

}  // namespace minidl::optim
