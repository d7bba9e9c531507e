// minidl — Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019,
// Algorithm 2), as torch.optim.Adam / torch.optim.AdamW.
//   Adam:  g = grad + weight_decay * p                 (L2, coupled)
//   AdamW: p *= 1 - lr * weight_decay                  (decoupled), g = grad
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
#pragma once

#include "optim/optimizer.hpp"

namespace minidl::optim {

struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  /// false: Adam (L2 added to the gradient); true: AdamW (decoupled decay).
  bool decoupled_weight_decay = false;
};

class Adam : public Optimizer {
 public:
  /// Throws std::invalid_argument for lr < 0, betas outside [0, 1), eps < 0, weight_decay < 0.
  Adam(std::vector<Tensor> params, AdamOptions options);
  void step() override;
  std::vector<StateBuffer> state_buffers() override;
  int64_t step_count() const override { return t_; }
  void set_step_count(int64_t t) override { t_ = t; }

 private:
  AdamOptions opt_;
  int64_t t_ = 0;
  std::vector<std::vector<float>> m_, v_;
};

/// AdamW: Adam with decoupled weight decay. `options.weight_decay` is used as given (AdamOptions'
/// default is 0; torch.optim.AdamW's default is 1e-2, so pass it explicitly to match).
inline Adam AdamW(std::vector<Tensor> params, AdamOptions options) {
  options.decoupled_weight_decay = true;
  return Adam(std::move(params), options);
}

}  // namespace minidl::optim
