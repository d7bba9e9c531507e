// minidl — Optimizer: updates a list of parameters from their accumulated gradients.
// Only parameters with requires_grad() == true are touched (frozen parameters keep their values
// bit for bit and get no weight decay). A parameter without a gradient is skipped, as in PyTorch.
#pragma once

#include <vector>

#include "core/tensor.hpp"

namespace minidl::optim {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, float lr);
  virtual ~Optimizer() = default;
  /// One update of every trainable parameter from its .grad.
  virtual void step() = 0;
  /// Drops every parameter's gradient (torch: zero_grad(set_to_none=True)).
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  /// Optimizer state (momentum buffers, Adam moments) by parameter index, for checkpoints.
  virtual std::vector<std::vector<float>*> state_buffers() { return {}; }
  /// Number of step() calls so far that the update depends on (Adam's bias correction).
  virtual int64_t step_count() const { return 0; }
  virtual void set_step_count(int64_t) {}
  const std::vector<Tensor>& params() const { return params_; }

 protected:
  std::vector<Tensor> params_;
  float lr_;
};

}  // namespace minidl::optim
