// minidl — Optimizer: updates a list of parameters from their accumulated gradients.
// Only parameters with requires_grad() == true are touched (frozen parameters keep their values
// bit for bit and get no weight decay). A parameter without a gradient is skipped, as in PyTorch.
#pragma once

#include <cstdint>
#include <string>
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
  /// One state buffer of one parameter, for checkpoints. `kind` is PyTorch's name in
  /// optimizer.state_dict() ("momentum_buffer" for SGD, "exp_avg" and "exp_avg_sq" for Adam);
  /// `param` indexes params(). A buffer is empty until the parameter's first update (frozen
  /// parameters never get one), else it holds params()[param].numel() floats; step() relies on
  /// that, so whoever fills a buffer must keep it (checked: std::logic_error otherwise).
  struct StateBuffer {
    std::string kind;
    size_t param;
    std::vector<float>* values;
  };
  /// Every state buffer, parameter by parameter (for each parameter, its kinds in a fixed order).
  virtual std::vector<StateBuffer> state_buffers() { return {}; }
  /// Number of step() calls so far that the update depends on (Adam's bias correction).
  virtual int64_t step_count() const { return 0; }
  virtual void set_step_count(int64_t) {}
  const std::vector<Tensor>& params() const { return params_; }
  /// Restricts updates of `param` (one of this optimizer's) to the elements where mask is 1;
  /// the others keep their values bit for bit and get no weight decay. Throws
  /// std::invalid_argument if `param` is not optimized here or the mask has the wrong length.
  void set_update_mask(const Tensor& param, std::vector<uint8_t> mask);
  /// Gives `param` settings of its own, as a torch.optim parameter group would: its learning
  /// rate is lr_scale times the optimizer's lr (so a schedule, which sets the optimizer's lr,
  /// moves every group alike; torch's groups hold absolute lrs that its schedulers scale the
  /// same way) and its weight decay is `weight_decay` instead of the optimizer's. Throws
  /// std::invalid_argument if `param` is not optimized here or a value is negative or NaN.
  void set_param_group(const Tensor& param, float lr_scale, float weight_decay);

 protected:
  /// The learning rate and weight decay of parameter i (its group's, else the optimizer's lr and
  /// `default_weight_decay`).
  float lr_of(size_t i) const { return groups_[i].set ? lr_ * groups_[i].lr_scale : lr_; }
  float weight_decay_of(size_t i, float default_weight_decay) const {
    return groups_[i].set ? groups_[i].weight_decay : default_weight_decay;
  }
  /// The mask of parameter i, or nullptr when every element learns.
  const uint8_t* mask(size_t i) const { return masks_[i].empty() ? nullptr : masks_[i].data(); }
  std::vector<Tensor> params_;
  float lr_;

 private:
  std::vector<std::vector<uint8_t>> masks_;
  struct Group {
    bool set = false;
    float lr_scale = 1.0f, weight_decay = 0.0f;
  };
  std::vector<Group> groups_;
};

}  // namespace minidl::optim
