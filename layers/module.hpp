// minidl — Module: the base of every layer and model (torch.nn.Module's vocabulary).
//
// A module owns named parameters (learned, requires_grad = true unless frozen), named buffers
// (state that is saved but not learned, e.g. BatchNorm's running_mean) and named child modules.
// Names compose with dots exactly as PyTorch's state_dict keys: "blocks.0.bn1.running_var".
// train()/eval() set the mode recursively; only layers whose math differs (BatchNorm) read it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/random.hpp"
#include "core/tensor.hpp"

namespace minidl {

class Module {
 public:
  virtual ~Module() = default;

  /// The layer's computation. Shapes are given in each layer's header.
  virtual Tensor forward(const Tensor& x) = 0;
  /// Runs the forward pre-hooks, then forward(x). Call modules this way (not forward()
  /// directly), so that hooks see every call; a layer with fused entry points (BatchNorm's
  /// forward_relu) runs the hooks in those too.
  Tensor operator()(const Tensor& x) {
    run_forward_pre_hooks(x);
    return forward(x);
  }

  /// A function called with the module and its input before each forward (torch:
  /// Module.register_forward_pre_hook). It may throw; the exception leaves the forward.
  using ForwardPreHook = std::function<void(Module& module, const Tensor& input)>;
  /// Removes its hook when destroyed (RAII), so a hook cannot outlive the code that set it,
  /// also when an exception leaves that code. Move-only; must not outlive the module.
  class HookHandle {
   public:
    HookHandle() = default;
    HookHandle(Module* m, uint64_t id) : module_(m), id_(id) {}
    HookHandle(HookHandle&& o) noexcept : module_(o.module_), id_(o.id_) { o.module_ = nullptr; }
    HookHandle& operator=(HookHandle&& o) noexcept {
      if (this != &o) {
        remove();
        module_ = o.module_, id_ = o.id_;
        o.module_ = nullptr;
      }
      return *this;
    }
    HookHandle(const HookHandle&) = delete;
    HookHandle& operator=(const HookHandle&) = delete;
    ~HookHandle() { remove(); }
    /// Removes the hook now (idempotent).
    void remove();

   private:
    Module* module_ = nullptr;
    uint64_t id_ = 0;
  };
  /// Registers `hook` on this module (not its children); hooks run in registration order.
  [[nodiscard]] HookHandle register_forward_pre_hook(ForwardPreHook hook);
  /// The PyTorch class name, e.g. "Conv2d" (for printing and inspection).
  virtual std::string type_name() const = 0;

  /// Sets training mode here and in every descendant (torch: module.train(mode)).
  void train(bool on = true);
  /// Inference mode (torch: module.eval()): BatchNorm uses its running statistics.
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Parameters of this module and its descendants, in registration order, with dotted names.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  /// Buffers of this module and its descendants.
  NamedTensors named_buffers() const;
  /// Every parameter and buffer, keyed as in PyTorch's state_dict (per module: parameters, then
  /// buffers, then children). The tensors are shared, not copied.
  NamedTensors state_dict() const;
  /// Copies values from `state` into this module's tensors. Every name of state_dict() must be
  /// present with the same shape, and no other name (PyTorch's strict = true; a BatchNorm's
  /// "num_batches_tracked" is ignored). Throws std::invalid_argument naming the offending key.
  void load_state_dict(const NamedTensors& state);
  /// This module ("" name) and every descendant, depth first, with dotted names.
  std::vector<std::pair<std::string, Module*>> named_modules();
  /// The modules of named_modules() that are a T (or derive from it), in the same order:
  /// `for (auto& [name, bn] : model.named_modules_of<BatchNorm>())`.
  template <class T>
  std::vector<std::pair<std::string, T*>> named_modules_of() {
    std::vector<std::pair<std::string, T*>> out;
    for (auto& [name, m] : named_modules()) {
      if (auto* t = dynamic_cast<T*>(m)) out.emplace_back(name, t);
    }
    return out;
  }
  /// named_modules_of<T>() without the names.
  template <class T>
  std::vector<T*> modules_of() {
    std::vector<T*> out;
    for (auto& [name, m] : named_modules()) {
      if (auto* t = dynamic_cast<T*>(m)) out.push_back(t);
    }
    return out;
  }
  /// Calls every forward pre-hook with `x`. operator() does; so must a fused entry point of
  /// this layer (BatchNorm's forward_relu), and a parent that computes a child's forward
  /// without calling it (BasicBlock's conv1 and shortcut, ops::conv2d_with_projection).
  void run_forward_pre_hooks(const Tensor& x) {
    for (auto& [id, hook] : pre_hooks_) hook(*this, x);
  }
  /// Direct children.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

 protected:
  /// Registers a learned tensor; requires_grad is switched on.
  Tensor& register_parameter(const std::string& name, Tensor t);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  bool training_ = true;
  std::vector<std::pair<uint64_t, ForwardPreHook>> pre_hooks_;
  uint64_t next_hook_id_ = 1;
  NamedTensors params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

/// Kaiming (He et al. 2015, eq. 10) normal init, torch.nn.init.kaiming_normal_ defaults
/// (mode fan_in, gain sqrt(2)): w ~ N(0, 2 / fan_in), fan_in = numel / shape[0].

void kaiming_normal_(Tensor& w, Generator& gen);
/// Kaiming normal init in mode fan_out, torch.nn.init.kaiming_normal_(w, mode="fan_out",
/// nonlinearity="relu") as torchvision's VGG initializes its convs: w ~ N(0, 2 / fan_out),
/// fan_out = numel / shape[1] (out_channels * kernel_h * kernel_w for a conv weight). It keeps
/// the variance of the gradients, rather than of the activations, constant from layer to layer.
void kaiming_normal_fan_out_(Tensor& w, Generator& gen);
/// N(mean, std^2) init (torch.nn.init.normal_).
void normal_(Tensor& w, float mean, float std, Generator& gen);
/// U(-bound, bound) init.
void uniform_(Tensor& w, float bound_lo, float bound_hi, Generator& gen);
/// Dirac (identity) init of a conv weight [out_channels, in_channels, KH, KW]
/// (torch.nn.init.dirac_, groups = 1): w[i, i, KH / 2, KW / 2] = 1 for i < min(out, in), every
/// other value 0, so the conv passes its first min(out, in) input channels through unchanged
/// (with padding KH / 2). Throws std::invalid_argument for a tensor that is not 4-d.
void dirac_(Tensor& w);
/// dirac_ on the first `filters` output filters only (torch.nn.init.dirac_(w[:filters])):
/// w[i, i, KH / 2, KW / 2] = 1 and every other value of filter i is 0, for i < filters; filters
/// >= filters keep their values. airbench94 initializes its convs so, with filters = in_channels.
/// Throws std::invalid_argument for a tensor that is not 4-d or filters outside 0..min(out, in).
void dirac_(Tensor& w, int64_t filters);

}  // namespace minidl
