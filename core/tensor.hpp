// minidl — Tensor: a float32, contiguous, row-major n-d array with an optional gradient and a
// link into the autograd graph.
//
// Image tensors are NCHW: [N, C, H, W]. The dimension letters of every shape comment (N, C, O,
// H, W, KH, KW, S, K, ...) are defined once, in the legend at the top of core/ops.hpp.
//
// A Tensor is a cheap handle (shared_ptr) to its storage, like a torch.Tensor: copying a
// Tensor shares data. `clone()` makes a deep copy.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace minidl {

using Shape = std::vector<int64_t>;

/// Adds `delta` bytes to the count of tensor storage (UninitAllocator's allocations).
void count_storage_bytes(int64_t delta);
/// Bytes of tensor storage allocated now (values, gradients, saved activations, optimizer
/// buffers: every Storage), and the most at any moment since reset_peak_storage_bytes().
int64_t storage_bytes();
int64_t peak_storage_bytes();
/// Sets the peak to the current count.
void reset_peak_storage_bytes();

/// An allocator that leaves new floats uninitialized (value-initialization is what makes
/// std::vector zero its memory). Ops whose outputs are fully overwritten skip a memset pass.
/// It counts its bytes (storage_bytes), so that a step's memory can be measured.
template <class T>
struct UninitAllocator : std::allocator<T> {
  T* allocate(std::size_t n) {
    T* p = std::allocator<T>::allocate(n);
    count_storage_bytes(static_cast<int64_t>(n * sizeof(T)));
    return p;
  }
  void deallocate(T* p, std::size_t n) {
    count_storage_bytes(-static_cast<int64_t>(n * sizeof(T)));
    std::allocator<T>::deallocate(p, n);
  }
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) {}
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      ::new (static_cast<void*>(p)) U;
    } else {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  }
};

/// A tensor's contiguous float32 storage.
using Storage = std::vector<float, UninitAllocator<float>>;

/// "[2, 3, 4]" — for error messages.
std::string shape_str(const Shape& shape);
/// Product of the dimensions (1 for a scalar shape []).
int64_t shape_numel(const Shape& shape);

struct TensorImpl;

/// A float32 n-d array. Errors: constructors throw std::invalid_argument on negative dimensions
/// or when given data of the wrong length.
class Tensor {
 public:
  /// An undefined tensor (defined() == false), like an empty torch.Tensor handle.
  Tensor() = default;
  /// Zero-filled tensor of `shape`.
  explicit Tensor(const Shape& shape, bool requires_grad = false);
  /// Tensor of `shape` holding `values` (values.size() must equal the shape's numel).
  Tensor(const Shape& shape, std::vector<float> values, bool requires_grad = false);

  static Tensor zeros(const Shape& shape) { return Tensor(shape); }
  /// Tensor of `shape` with unspecified values (for outputs an op overwrites entirely).
  static Tensor empty(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor scalar(float value) { return Tensor(Shape{}, std::vector<float>{value}); }

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  /// Size of dimension d; negative d counts from the end. Throws std::out_of_range.
  int64_t size(int64_t d) const;
  int64_t numel() const;

  /// Read access to the values. Never changes the tensor's version, whatever the handle's
  /// constness: reading a weight keeps derived data (conv2d's cached Winograd transform) valid.
  const float* data() const;
  const Storage& vec() const;
  /// Write access to the values: bumps the tensor's version, invalidating data derived from
  /// them (see TensorImpl::version). The only value accessors that do; use them to write, and
  /// data() / vec() to read.
  float* mutable_data();
  Storage& mutable_vec();
  /// The single value of a one-element tensor. Throws std::logic_error otherwise.
  float item() const;

  /// Whether autograd accumulates a gradient for this tensor (torch: requires_grad).
  bool requires_grad() const;
  void set_requires_grad(bool on);
  /// The accumulated gradient, same shape as the tensor; undefined until backward() writes it.
  Tensor grad() const;
  /// Gradient storage, allocated (zeros) on first use.
  float* grad_data() const;
  /// Gradient storage for an op about to write every element: when the tensor has no gradient
  /// yet it is allocated *uninitialized* and *fresh is set true — the op must then assign (=),
  /// not accumulate (+=). Saves the zero-fill pass for activation-sized gradients (conv2d's and
  /// BatchNorm's input gradients use it). Measured: resnet20 training steps (batch 128, 2
  /// threads, Intel Xeon model 167, AVX-512), 5 alternating rounds of `minidl bench --steps 30`:
  /// 941 images/s median with it, 902 with every gradient zero-allocated and accumulated
  /// (+4.3%; docs/speed/grad_for_write_ab.txt).
  float* grad_for_write(bool* fresh) const;
  bool has_grad() const;
  /// Drops the gradient (torch: tensor.grad = None).
  void zero_grad();

  /// Deep copy of the data (no grad, no graph).
  Tensor clone() const;
  /// Same data (shared), new shape with equal numel. Throws std::invalid_argument.
  /// Not differentiable: use ops::reshape inside a model.
  Tensor view(const Shape& shape) const;
  /// Copies src's values into this tensor. Throws std::invalid_argument on a shape mismatch.
  void copy_(const Tensor& src);
  void fill_(float value);

  /// Reverse-mode autodiff from this scalar: seeds d(self)/d(self) = 1 and walks the graph.
  /// Throws std::logic_error unless numel() == 1 and the tensor is part of a graph.
  void backward();
  /// Backward with an explicit output gradient of the same shape (for gradient checks).
  void backward(const Tensor& grad_output);

  TensorImpl* impl() const { return impl_.get(); }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

/// Tensors with names, in order: a state_dict (layers/module.hpp) or a checkpoint's contents
/// (core/safetensors.hpp). The tensors are shared handles, not copies.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

/// One recorded operation: the inputs it read and a closure that, given the output's gradient,
/// accumulates (+=) into the inputs' gradients. micrograd's `_backward`, in C++.
struct Node {
  std::vector<Tensor> inputs;
  std::function<void()> backward;
  const char* name = "";
  /// Run backward even when the output took no gradient (the walk skips such nodes otherwise):
  /// for an op with a second output whose gradient this node consumes
  /// (ops::conv2d_with_projection).
  bool runs_without_grad = false;
};

/// Data an op derives from a tensor's values and keeps for reuse (conv2d's Winograd-transformed
/// weight): valid while the tensor's `version` equals the one it was computed from.
struct DerivedCache {
  int key = -1;
  uint64_t version = 0;
  Storage data;
};

struct TensorImpl {
  Shape shape;
  std::shared_ptr<Storage> storage;
  Storage grad;  // empty until first accumulation
  bool requires_grad = false;
  std::shared_ptr<Node> node;  // set for outputs of recorded ops
  /// Bumped by every write access to the values (Tensor::mutable_data(), mutable_vec(), copy_,
  /// fill_): an optimizer step, load_state_dict, initialization; reads (data(), vec()) leave it
  /// alone. Writes through a view() of this tensor, or through a pointer kept from an earlier
  /// mutable_data() call, are not seen.
  uint64_t version = 0;
  std::vector<DerivedCache> derived;  ///< see DerivedCache; ops look entries up by key
};

}  // namespace minidl
