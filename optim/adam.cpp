#include "optim/adam.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace minidl::optim {

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Optimizer(std::move(params), options.lr), opt_(options) {
  if (opt_.lr < 0 || opt_.eps < 0 || opt_.weight_decay < 0 || opt_.beta1 < 0 || opt_.beta1 >= 1 ||
      opt_.beta2 < 0 || opt_.beta2 >= 1) {
    throw std::invalid_argument(
        "Adam: need lr, eps, weight_decay >= 0 and betas in [0, 1), got "
        "lr " +
        std::to_string(opt_.lr) + ", betas (" + std::to_string(opt_.beta1) + ", " +
        std::to_string(opt_.beta2) + "), eps " + std::to_string(opt_.eps) + ", weight_decay " +
        std::to_string(opt_.weight_decay));
  }
  m_.resize(params_.size());
  v_.resize(params_.size());
}

void Adam::step() {
  ++t_;
  const double b1 = opt_.beta1, b2 = opt_.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    if (!p.requires_grad() || !p.has_grad()) continue;
    const float lr = lr_of(i), wd = weight_decay_of(i, opt_.weight_decay);
    const float step_size = static_cast<float>(lr / bc1);
    float* w = p.mutable_data();
    const float* grad = p.grad_data();
    const int64_t n = p.numel();
    if (m_[i].empty()) {
      m_[i].assign(n, 0.0f);
      v_[i].assign(n, 0.0f);
    }
    if (m_[i].size() != static_cast<size_t>(n) || v_[i].size() != static_cast<size_t>(n)) {
      throw std::logic_error("Adam: state of parameter " + std::to_string(i) + " holds " +
                             std::to_string(m_[i].size()) + " and " + std::to_string(v_[i].size()) +
                             " values, the parameter " + std::to_string(n));
    }
    float* m = m_[i].data();
    float* v = v_[i].data();
    const uint8_t* mk = mask(i);
    for (int64_t j = 0; j < n; ++j) {
      if (mk && !mk[j]) continue;  // masked out: untouched
      float g = grad[j];
      if (opt_.decoupled_weight_decay) {
        w[j] *= 1.0f - lr * wd;  // AdamW: p *= 1 - lr * wd
      } else {
        g += wd * w[j];  // Adam: L2 in the gradient
      }
      m[j] = opt_.beta1 * m[j] + (1.0f - opt_.beta1) * g;
      v[j] = opt_.beta2 * v[j] + (1.0f - opt_.beta2) * g * g;
      w[j] -= step_size * m[j] / (std::sqrt(v[j]) * inv_sqrt_bc2 + opt_.eps);
    }
  }
}

std::vector<Optimizer::StateBuffer> Adam::state_buffers() {
  std::vector<StateBuffer> out;
  for (size_t i = 0; i < m_.size(); ++i) {
    out.push_back({"exp_avg", i, &m_[i]});
    out.push_back({"exp_avg_sq", i, &v_[i]});
  }
  return out;
}

}  // namespace minidl::optim
