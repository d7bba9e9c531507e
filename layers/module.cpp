// minidl — Module bookkeeping and the shared initializers.
#include "layers/module.hpp"

#include <algorithm>

#include <cmath>
#include <map>
#include <stdexcept>

#include "core/random.hpp"

namespace minidl {

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(name, std::move(t));
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.emplace_back(name, std::move(t));
  return buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     NamedTensors& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  for (const auto& [n, child] : children_) child->collect(prefix + n + ".", params, buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  return out;
}

void Module::load_state_dict(const NamedTensors& state) {
  std::map<std::string, const Tensor*> given;
  for (const auto& [n, t] : state) given[n] = &t;
  NamedTensors mine = state_dict();
  for (auto& [name, t] : mine) {
    auto it = given.find(name);
    if (it == given.end()) {
      throw std::invalid_argument("load_state_dict: missing key \"" + name + "\" (expected shape " +
                                  shape_str(t.shape()) + ")");
    }
    if (it->second->shape() != t.shape()) {
      throw std::invalid_argument("load_state_dict: \"" + name + "\" has shape " +
                                  shape_str(it->second->shape()) + ", the model expects " +
                                  shape_str(t.shape()));
    }
  }
  for (const auto& [n, t] : state) {
    bool known = false;
    for (auto& [name, mt] : mine) known = known || name == n;
    const std::string suffix = "num_batches_tracked";
    const bool tracked = n.size() >= suffix.size() &&
                         n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (!known && !tracked) {
      throw std::invalid_argument("load_state_dict: unexpected key \"" + n +
                                  "\" (not in this model)");
    }
  }
  for (auto& [name, t] : mine) t.copy_(*given[name]);
}

Module::HookHandle Module::register_forward_pre_hook(ForwardPreHook hook) {
  const uint64_t id = next_hook_id_++;
  pre_hooks_.emplace_back(id, std::move(hook));
  return HookHandle(this, id);
}

void Module::HookHandle::remove() {
  if (!module_) return;
  auto& hooks = module_->pre_hooks_;
  for (auto it = hooks.begin(); it != hooks.end(); ++it) {
    if (it->first == id_) {
      hooks.erase(it);
      break;
    }
  }
  module_ = nullptr;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [n, child] : children_) {
    for (auto& [sub, m] : child->named_modules())
      out.emplace_back(sub.empty() ? n : n + "." + sub, m);
  }
  return out;
}

void kaiming_normal_(Tensor& w, Generator& gen) {
  const int64_t fan_in = w.numel() / w.size(0);
  const float std = std::sqrt(2.0f / static_cast<float>(fan_in));
  for (float& v : w.mutable_vec()) v = std * gen.normal();
}

void kaiming_normal_fan_out_(Tensor& w, Generator& gen) {
  if (w.dim() < 2) {
    throw std::invalid_argument("kaiming_normal_fan_out_: needs at least 2 dimensions, got " +
                                shape_str(w.shape()));
  }
  const int64_t fan_out = w.numel() / w.size(1);
  normal_(w, 0.0f, std::sqrt(2.0f / static_cast<float>(fan_out)), gen);
}

void normal_(Tensor& w, float mean, float std, Generator& gen) {
  for (float& v : w.mutable_vec()) v = mean + std * gen.normal();
}

void uniform_(Tensor& w, float lo, float hi, Generator& gen) {
  for (float& v : w.mutable_vec()) v = gen.uniform(lo, hi);
}

void dirac_(Tensor& w) {
  if (w.dim() != 4) {
    throw std::invalid_argument("dirac_: expected a conv weight [out, in, KH, KW], got " +
                                shape_str(w.shape()));
  }
  const int64_t O = w.size(0), C = w.size(1), KH = w.size(2), KW = w.size(3);
  w.fill_(0.0f);
  float* d = w.mutable_data();
  for (int64_t i = 0; i < std::min(O, C); ++i) d[((i * C + i) * KH + KH / 2) * KW + KW / 2] = 1.0f;
}

void dirac_(Tensor& w, int64_t filters) {
  if (w.dim() != 4 || filters < 0 || filters > std::min(w.size(0), w.size(1))) {
    throw std::invalid_argument(
        "dirac_: expected a conv weight [out, in, KH, KW] and 0 <= filters <= min(out, in), got " +
        shape_str(w.shape()) + " and filters " + std::to_string(filters));
  }
  const int64_t C = w.size(1), KH = w.size(2), KW = w.size(3), per_filter = C * KH * KW;
  float* d = w.mutable_data();
  std::fill(d, d + filters * per_filter, 0.0f);
  for (int64_t i = 0; i < filters; ++i) d[((i * C + i) * KH + KH / 2) * KW + KW / 2] = 1.0f;
}

}  // namespace minidl
