#include "optim/optimizer.hpp"

#include <stdexcept>
#include <string>

namespace minidl::optim {

Optimizer::Optimizer(std::vector<Tensor> params, float lr)
    : params_(std::move(params)), lr_(lr), masks_(params_.size()), groups_(params_.size()) {}

void Optimizer::set_param_group(const Tensor& param, float lr_scale, float weight_decay) {
  if (!(lr_scale >= 0.0f) || !(weight_decay >= 0.0f)) {
    throw std::invalid_argument("set_param_group: lr_scale and weight_decay must be >= 0, got " +
                                std::to_string(lr_scale) + " and " + std::to_string(weight_decay));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].same(param)) continue;
    groups_[i] = Group{true, lr_scale, weight_decay};
    return;
  }
  throw std::invalid_argument("set_param_group: the tensor is not a parameter of this optimizer");
}

void Optimizer::set_update_mask(const Tensor& param, std::vector<uint8_t> mask) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].same(param)) continue;
    if (static_cast<int64_t>(mask.size()) != param.numel()) {
      throw std::invalid_argument("set_update_mask: mask of " + std::to_string(mask.size()) +
                                  " elements for a parameter of shape " + shape_str(param.shape()));
    }
    masks_[i] = std::move(mask);
    return;
  }
  throw std::invalid_argument("set_update_mask: the tensor is not a parameter of this optimizer");
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

}  // namespace minidl::optim
