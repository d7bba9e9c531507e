#include "optim/lookahead.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace minidl::optim {

Lookahead::Lookahead(const Module& model) {
  for (const auto& [name, t] : model.state_dict()) ema_.emplace_back(name, t.clone());
}

void Lookahead::update(Module& model, float decay) {
  if (!(decay >= 0.0f && decay <= 1.0f))
    throw std::invalid_argument("Lookahead::update: decay must be in [0, 1], got " +
                                std::to_string(decay));
  NamedTensors net = model.state_dict();
  for (size_t i = 0; i < net.size() || i < ema_.size(); ++i) {
    if (i >= ema_.size())
      throw std::invalid_argument("Lookahead::update: the model has a tensor \"" + net[i].first +
                                  "\" that it did not have when the Lookahead was made");
    if (i >= net.size())
      throw std::invalid_argument("Lookahead::update: the model has no tensor \"" + ema_[i].first +
                                  "\" (it had when the Lookahead was made)");
    if (net[i].first != ema_[i].first)
      throw std::invalid_argument("Lookahead::update: the model's tensor " + std::to_string(i) +
                                  " is \"" + net[i].first + "\", expected \"" + ema_[i].first +
                                  "\" (as when the Lookahead was made)");
    if (net[i].second.shape() != ema_[i].second.shape())
      throw std::invalid_argument("Lookahead::update: \"" + net[i].first + "\" has shape " +
                                  shape_str(net[i].second.shape()) + ", its EMA has shape " +
                                  shape_str(ema_[i].second.shape()));
  }
  // torch: Scalar(1 - decay) in double, read as float by the float32 kernel.
  const float w = static_cast<float>(1.0 - static_cast<double>(decay));
  const bool small = std::abs(w) < 0.5f;
  const float one_minus_w = 1.0f - w;
  for (size_t i = 0; i < net.size(); ++i) {
    float* e = ema_[i].second.mutable_data();
    float* n = net[i].second.mutable_data();  // bumps the version (derived caches)
    const int64_t count = net[i].second.numel();
    for (int64_t j = 0; j < count; ++j) {
      const float v = small ? e[j] + w * (n[j] - e[j]) : n[j] - (n[j] - e[j]) * one_minus_w;
      e[j] = v;
      n[j] = v;
    }
  }
}

float Lookahead::decay(int64_t step, int64_t total_steps) {
  if (total_steps < 1)
    throw std::invalid_argument("Lookahead::decay: total_steps must be >= 1, got " +
                                std::to_string(total_steps));
  if (step < 0 || step > total_steps)
    throw std::invalid_argument("Lookahead::decay: step must be in [0, total_steps = " +
                                std::to_string(total_steps) + "], got " + std::to_string(step));
  const float base = static_cast<float>(std::pow(0.95, 5.0));  // Python's 0.95**5, as float
  const float x = static_cast<float>(step) / static_cast<float>(total_steps);
  return base * (x * x * x);
}

}  // namespace minidl::optim
