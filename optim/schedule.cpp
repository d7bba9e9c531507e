#include "optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace minidl::optim {

const EnumTable<ScheduleKind>& enum_table(ScheduleKind) {
  static const EnumTable<ScheduleKind> t = {
      {ScheduleKind::kConstant, "constant", "base_lr throughout"},
      {ScheduleKind::kMultistep, "multistep", "base_lr x gamma at each milestone"},
      {ScheduleKind::kCosine, "cosine", "cosine from base_lr to 0"},
      {ScheduleKind::kOneCycle, "onecycle", "linear warm-up to base_lr, then linear to 0"},
      {ScheduleKind::kPiecewise, "piecewise", "linear between knots (airbench94's)"}};
  return t;
}

void Schedule::validate() const {
  if (total_steps < 1) throw std::invalid_argument("the schedule needs total_steps >= 1");
  if (warmup_steps < 0) throw std::invalid_argument("the schedule's warmup_steps must be >= 0");
  if (kind != ScheduleKind::kPiecewise) return;
  if (knots.empty())
    throw std::invalid_argument("the piecewise schedule needs at least one knot (step, factor)");
  for (size_t i = 0; i < knots.size(); ++i) {
    const auto& [step, factor] = knots[i];
    if (!std::isfinite(factor) || factor < 0)
      throw std::invalid_argument(
          "the piecewise schedule's factors must be finite and >= 0; knot " + std::to_string(i) +
          " has " + std::to_string(factor));
    if (i > 0 && step <= knots[i - 1].first)
      throw std::invalid_argument(
          "the piecewise schedule's knot steps must be strictly increasing; knot " +
          std::to_string(i) + " has step " + std::to_string(step) + " after " +
          std::to_string(knots[i - 1].first));
  }
}

Schedule Schedule::airbench94(int64_t total_steps, float base_lr) {
  Schedule s;
  s.kind = ScheduleKind::kPiecewise;
  s.base_lr = base_lr;
  s.total_steps = total_steps;
  const int64_t w = static_cast<int64_t>(0.23 * static_cast<double>(total_steps));
  s.knots = {{0, 0.2}, {w, 1.0}, {total_steps, 0.07}};
  s.validate();
  return s;
}

float Schedule::lr(int64_t t) const {
  const double T = static_cast<double>(total_steps);
  double f = 1.0;
  if (kind == ScheduleKind::kMultistep) {
    for (int64_t m : milestones) f *= (t >= m) ? gamma : 1.0;
  } else if (kind == ScheduleKind::kCosine) {
    f = 0.5 * (1.0 + std::cos(M_PI * std::min<double>(t, T) / T));
  } else if (kind == ScheduleKind::kOneCycle) {
    const double peak = std::max<int64_t>(warmup_steps, 1);
    if (t < warmup_steps) return static_cast<float>(base_lr * (t + 1) / peak);
    f = std::max(0.0, (T - t) / std::max(1.0, T - warmup_steps));
    return static_cast<float>(base_lr * f);
  } else if (kind == ScheduleKind::kPiecewise && !knots.empty()) {
    // The first knot with a step > t; t lies between the one before it and it.
    const auto next = std::upper_bound(knots.begin(), knots.end(), t,
                                       [](int64_t v, const auto& k) { return v < k.first; });
    if (next == knots.begin()) {
      f = knots.front().second;
    } else if (next == knots.end()) {
      f = knots.back().second;
    } else {
      const auto& [t0, f0] = *(next - 1);
      const auto& [t1, f1] = *next;
      const double frac = (static_cast<double>(t) - static_cast<double>(t0)) /
                          (static_cast<double>(t1) - static_cast<double>(t0));
      f = f0 * (1.0 - frac) + f1 * frac;
    }
  }
  if (t < warmup_steps) f *= static_cast<double>(t + 1) / static_cast<double>(warmup_steps);
  return static_cast<float>(base_lr * f);
}

}  // namespace minidl::optim
