#include "optim/sgd.hpp"

#include <stdexcept>
#include <string>

namespace minidl::optim {

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : Optimizer(std::move(params), options.lr), opt_(options) {
  if (opt_.lr < 0 || opt_.momentum < 0 || opt_.weight_decay < 0) {
    throw std::invalid_argument("SGD: lr, momentum and weight_decay must be >= 0, got lr " +
                                std::to_string(opt_.lr) + ", momentum " +
                                std::to_string(opt_.momentum) + ", weight_decay " +
                                std::to_string(opt_.weight_decay));
  }
  if (opt_.nesterov && opt_.momentum <= 0) {
    throw std::invalid_argument("SGD: nesterov needs momentum > 0");
  }
  momentum_buffer_.resize(params_.size());
}

void SGD::step() {
  const float mu = opt_.momentum;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    if (!p.requires_grad() || !p.has_grad()) continue;  // frozen: untouched, bit for bit
    const float lr = lr_of(i), wd = weight_decay_of(i, opt_.weight_decay);
    float* w = p.mutable_data();
    const float* g = p.grad_data();
    const int64_t n = p.numel();
    std::vector<float>& buf = momentum_buffer_[i];
    const bool first = buf.empty();
    if (mu != 0.0f && first) buf.resize(n);
    if (mu != 0.0f && buf.size() != static_cast<size_t>(n)) {
      throw std::logic_error("SGD: momentum buffer of parameter " + std::to_string(i) + " holds " +
                             std::to_string(buf.size()) + " values, the parameter " +
                             std::to_string(n));
    }
    const uint8_t* m = mask(i);
    for (int64_t j = 0; j < n; ++j) {
      if (m && !m[j]) continue;    // masked out: untouched
      float d = g[j] + wd * w[j];  // g = grad + weight_decay * p
      if (mu != 0.0f) {
        buf[j] = first ? d : mu * buf[j] + d;  // buf = momentum * buf + g
        d = opt_.nesterov ? d + mu * buf[j] : buf[j];
      }
      w[j] -= lr * d;
    }
  }
}

std::vector<Optimizer::StateBuffer> SGD::state_buffers() {
  std::vector<StateBuffer> out;
  for (size_t i = 0; i < momentum_buffer_.size(); ++i) {
    out.push_back({"momentum_buffer", i, &momentum_buffer_[i]});
  }
  return out;
}

}  // namespace minidl::optim
