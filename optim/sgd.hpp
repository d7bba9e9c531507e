// minidl — SGD with momentum, Nesterov momentum and L2 weight decay (torch.optim.SGD).
//   g = grad + weight_decay * p
//   buf = momentum * buf + g            (buf = g at the first step; dampening 0)
//   d = nesterov ? g + momentum * buf : buf
//   p -= lr * d
// Sutskever et al. 2013 for Nesterov in this form; PyTorch docs, torch.optim.SGD.
#pragma once

#include "optim/optimizer.hpp"

namespace minidl::optim {

struct SGDOptions {
  float lr = 0.1f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  /// Throws std::invalid_argument for lr < 0, momentum < 0, weight_decay < 0, or nesterov
  /// without momentum.
  SGD(std::vector<Tensor> params, SGDOptions options);
  void step() override;
  std::vector<StateBuffer> state_buffers() override;

 private:
  SGDOptions opt_;
  std::vector<std::vector<float>> momentum_buffer_;
};

}  // namespace minidl::optim
