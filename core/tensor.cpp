// minidl — Tensor storage (the autograd walk that Tensor::backward starts is in autograd.cpp).
#include "core/tensor.hpp"
#include "core/autograd.hpp"

#include "core/kernels.hpp"
#include "core/profiler.hpp"

#include <algorithm>
#include <atomic>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

namespace minidl {

namespace {
std::atomic<int64_t> g_storage_bytes{0}, g_peak_storage_bytes{0};
}  // namespace

void count_storage_bytes(int64_t delta) {
  const int64_t now = g_storage_bytes.fetch_add(delta, std::memory_order_relaxed) + delta;
  int64_t peak = g_peak_storage_bytes.load(std::memory_order_relaxed);
  while (now > peak &&
         !g_peak_storage_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

int64_t storage_bytes() { return g_storage_bytes.load(); }
int64_t peak_storage_bytes() { return g_peak_storage_bytes.load(); }
void reset_peak_storage_bytes() { g_peak_storage_bytes.store(g_storage_bytes.load()); }

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + shape_str(shape));
    n *= d;
  }
  return n;
}

Tensor::Tensor(const Shape& shape, bool requires_grad) : impl_(std::make_shared<TensorImpl>()) {
  impl_->shape = shape;
  impl_->storage = std::make_shared<Storage>(shape_numel(shape));
  kernels::fill(impl_->storage->data(), static_cast<int64_t>(impl_->storage->size()), 0.0f);
  impl_->requires_grad = requires_grad;
}

Tensor Tensor::empty(const Shape& shape) {
  Tensor t;
  t.impl_ = std::make_shared<TensorImpl>();
  t.impl_->shape = shape;
  t.impl_->storage = std::make_shared<Storage>(shape_numel(shape));
  return t;
}

Tensor::Tensor(const Shape& shape, std::vector<float> values, bool requires_grad)
    : impl_(std::make_shared<TensorImpl>()) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape)) {
    throw std::invalid_argument("Tensor: " + std::to_string(values.size()) +
                                " values do not fill shape " + shape_str(shape));
  }
  impl_->shape = shape;
  impl_->storage = std::make_shared<Storage>(values.begin(), values.end());
  impl_->requires_grad = requires_grad;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t(shape);
  t.fill_(value);
  return t;
}

static TensorImpl& checked(TensorImpl* impl) {
  if (!impl) throw std::logic_error("use of an undefined Tensor");
  return *impl;
}

const Shape& Tensor::shape() const { return checked(impl_.get()).shape; }
int64_t Tensor::size(int64_t d) const {
  const Shape& s = shape();
  int64_t n = static_cast<int64_t>(s.size());
  if (d < 0) d += n;
  if (d < 0 || d >= n) {
    throw std::out_of_range("Tensor::size(" + std::to_string(d) + ") of shape " + shape_str(s));
  }
  return s[d];
}
int64_t Tensor::numel() const { return static_cast<int64_t>(vec().size()); }
const float* Tensor::data() const { return vec().data(); }
const Storage& Tensor::vec() const { return *checked(impl_.get()).storage; }
float* Tensor::mutable_data() { return mutable_vec().data(); }
Storage& Tensor::mutable_vec() {
  TensorImpl& t = checked(impl_.get());
  ++t.version;
  return *t.storage;
}

float Tensor::item() const {
  if (numel() != 1) {
    throw std::logic_error("item() needs a one-element tensor, got shape " + shape_str(shape()));
  }
  return vec()[0];
}

bool Tensor::requires_grad() const { return checked(impl_.get()).requires_grad; }
void Tensor::set_requires_grad(bool on) { checked(impl_.get()).requires_grad = on; }

Tensor Tensor::grad() const {
  const TensorImpl& t = checked(impl_.get());
  if (t.grad.empty()) return Tensor();
  Tensor g = Tensor::empty(t.shape);
  std::copy(t.grad.begin(), t.grad.end(), g.mutable_data());
  return g;
}

float* Tensor::grad_data() const {
  TensorImpl& t = checked(impl_.get());
  if (t.grad.empty()) {
    t.grad.resize(t.storage->size());
    kernels::fill(t.grad.data(), static_cast<int64_t>(t.grad.size()), 0.0f);
  }
  return t.grad.data();
}

float* Tensor::grad_for_write(bool* fresh) const {
  TensorImpl& t = checked(impl_.get());
  *fresh = t.grad.empty();
  if (*fresh) t.grad.resize(t.storage->size());  // uninitialized (UninitAllocator)
  return t.grad.data();
}

bool Tensor::has_grad() const { return !checked(impl_.get()).grad.empty(); }
void Tensor::zero_grad() { Storage().swap(checked(impl_.get()).grad); }

Tensor Tensor::clone() const {
  Tensor t = Tensor::empty(shape());
  std::copy(vec().begin(), vec().end(), t.mutable_data());
  return t;
}

Tensor Tensor::view(const Shape& new_shape) const {
  if (shape_numel(new_shape) != numel()) {
    throw std::invalid_argument("view: cannot view shape " + shape_str(shape()) + " as " +
                                shape_str(new_shape));
  }
  Tensor t;
  t.impl_ = std::make_shared<TensorImpl>();
  t.impl_->shape = new_shape;
  t.impl_->storage = impl_->storage;
  return t;
}

void Tensor::copy_(const Tensor& src) {
  if (src.shape() != shape()) {
    throw std::invalid_argument("copy_: source shape " + shape_str(src.shape()) +
                                " != destination shape " + shape_str(shape()));
  }
  std::copy(src.vec().begin(), src.vec().end(), mutable_vec().begin());
}

void Tensor::fill_(float value) { kernels::fill(mutable_data(), numel(), value); }

void Tensor::backward() {
  if (!defined() || numel() != 1) {
    throw std::logic_error("backward() needs a scalar loss; got shape " +
                           (defined() ? shape_str(shape()) : std::string("undefined")));
  }
  backward(Tensor::full(shape(), 1.0f));
}

// Reverse topological walk (micrograd's engine, iterative). Each node's closure reads its
// output's .grad and accumulates into its inputs' .grad. After the walk the graph is released
// (PyTorch's retain_graph = False): closures and saved tensors are freed.
void Tensor::backward(const Tensor& grad_output) {
  if (!defined() || !impl_->node) {
    throw std::logic_error(
        "backward(): this tensor was not produced by a recorded op "
        "(no input requires grad, or grad mode was off)");
  }
  if (grad_output.shape() != shape()) {
    throw std::invalid_argument("backward(): gradient shape " + shape_str(grad_output.shape()) +
                                " != tensor shape " + shape_str(shape()));
  }
  run_backward(*this, grad_output);  // the engine: core/autograd.cpp
}

}  // namespace minidl
