#include "layers/recalibrate.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/autograd.hpp"
#include "layers/batch_norm.hpp"

namespace minidl {

int recalibrate_batch_norm(Module& model, const BatchSource& for_each_batch) {
  NoGradGuard no_grad;
  model.eval();
  // Each BN is recalibrated after every BN whose output reaches its input. Registration order
  // gives that for every model in the zoo: a block registers conv1, bn1, conv2, bn2, then the
  // shortcut's BN, and neither bn2 nor the shortcut BN feeds the other (their sum comes after
  // both), so the order between those two does not matter.
  std::vector<std::pair<std::string, BatchNorm*>> bns;
  for (auto& [name, m] : model.named_modules()) {
    if (auto* bn = dynamic_cast<BatchNorm*>(m)) bns.emplace_back(name, bn);
  }
  for (auto& [name, bn] : bns) {
    BatchNorm::InputStats stats;
    bn->observer = &stats;
    bn->stop_after_observe = true;
    for_each_batch([&](const Tensor& x) {
      try {
        model(x);
      } catch (const BatchNorm::StopForward&) {
      }
    });
    bn->observer = nullptr;
    bn->stop_after_observe = false;
    if (stats.count < 2) {
      throw std::invalid_argument("recalibrate: BatchNorm \"" + name + "\" saw " +
                                  std::to_string(stats.count) + " values per channel; need >= 2");
    }
    const double m = static_cast<double>(stats.count);
    for (int64_t c = 0; c < bn->num_features; ++c) {
      const double mean = stats.sum[c] / m;
      const double var = std::max(0.0, (stats.sum_sq[c] - m * mean * mean) / (m - 1.0));
      bn->running_mean.data()[c] = static_cast<float>(mean);
      bn->running_var.data()[c] = static_cast<float>(var);
    }
  }
  return static_cast<int>(bns.size());
}

}  // namespace minidl
