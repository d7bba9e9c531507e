#include "optim/optimizer.hpp"

#include <stdexcept>
#include <string>

namespace minidl::optim {

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = {"sgd", "adam", "adamw"};
  return names;
}

Optimizer::Optimizer(std::vector<Tensor> params, float lr)
    : params_(std::move(params)), lr_(lr), masks_(params_.size()) {}

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
