// minidl — Sequential (torch.nn.Sequential): applies its children in order; children are named
// "0", "1", ... so state_dict keys match PyTorch's ("shortcut.0.weight").
#pragma once

#include "layers/module.hpp"

namespace minidl {

class Sequential : public Module {
 public:
  /// Appends a layer; returns it.
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> m) {
    return register_module(std::to_string(children().size()), std::move(m));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& [name, m] : children()) h = (*m)(h);
    return h;
  }
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return children().size(); }
};

}  // namespace minidl
