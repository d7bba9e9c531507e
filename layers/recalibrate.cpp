#include "layers/recalibrate.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/autograd.hpp"
#include "core/moments.hpp"
#include "layers/batch_norm.hpp"

namespace minidl {

namespace {
/// Thrown by the measuring hook to end a forward pass once the layer's input is seen (no later
/// layer is needed); caught in recalibrate_batch_norm and nowhere else.
struct StopForward {};
}  // namespace

int recalibrate_batch_norm(Module& model, const BatchSource& for_each_batch) {
  NoGradGuard no_grad;
  model.eval();
  // Each BN is recalibrated after every BN whose output reaches its input. Registration order
  // gives that for every model in the zoo: a block registers conv1, bn1, conv2, bn2, then the
  // shortcut's BN, and neither bn2 nor the shortcut BN feeds the other (their sum comes after
  // both, whichever of the two runs first), so the order between those two does not matter.
  const std::vector<std::pair<std::string, BatchNorm*>> bns = model.named_modules_of<BatchNorm>();
  for (auto& [name, bn] : bns) {
    const int64_t C = bn->num_features;
    std::vector<Moments> moments(C);  // per channel, over N (and H, W)
    {
      // The hook is removed when `hook` goes out of scope, also when an exception leaves.
      const Module::HookHandle hook = bn->register_forward_pre_hook([&](Module&, const Tensor& x) {
        if (x.dim() < 2 || x.size(1) != C) return;  // BN itself reports the bad shape
        const int64_t N = x.size(0), S = x.numel() / std::max<int64_t>(1, N * C);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t c = 0; c < C; ++c) moments[c].add(x.data() + (n * C + c) * S, S);
        throw StopForward{};
      });
      for_each_batch([&](const Tensor& x) {
        try {
          model(x);
        } catch (const StopForward&) {
        }
      });
    }
    const int64_t count = moments.empty() ? 0 : moments[0].count;
    if (count < 2) {
      throw std::invalid_argument("recalibrate: BatchNorm \"" + name + "\" saw " +
                                  std::to_string(count) + " values per channel; need >= 2");
    }
    for (int64_t c = 0; c < C; ++c) {  // mean and unbiased variance (Algorithm 2, step 10)
      bn->running_mean.mutable_data()[c] = static_cast<float>(moments[c].mean());
      bn->running_var.mutable_data()[c] =
          static_cast<float>(moments[c].variance(/*unbiased=*/true));
    }
  }
  return static_cast<int>(bns.size());
}

}  // namespace minidl
