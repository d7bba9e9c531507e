// minidl — elementwise ops and reshapes, forward and backward.
//   relu:      y = max(x, 0);        dx += dy * (y > 0)
//   gelu:      y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2
//              dx += dy (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//              (vectorized float kernels, core/kernels.hpp)
//   scale:     y = s x;              dx += s dy
//   add:       y = a + b;            da += dy, db += dy
//   add_relu:  y = max(a + b, 0);    da += dy * (y > 0), db likewise
//   reshape:   same values;          dx += dy (viewed in x's shape)
#include <cmath>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"

namespace minidl::ops {

using detail::check;

namespace {

/// y [n] = max(x, 0).
void relu_forward(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/// dx [n] += dy * (y > 0), from the forward's output y.
void relu_backward(float* dx, const float* dy, const float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

/// y [n] = a + b, then max(., 0) with relu.
void add_forward(float* y, const float* a, const float* b, int64_t n, bool relu) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float s = a[i] + b[i];
    y[i] = (relu && s < 0.0f) ? 0.0f : s;
  }
}

/// da, db [n] += dy (times (y > 0) with relu); either may be null.
void add_backward(float* da, float* db, const float* dy, const float* y, int64_t n, bool relu) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float g = (relu && !(y[i] > 0.0f)) ? 0.0f : dy[i];
    if (da) da[i] += g;
    if (db) db[i] += g;
  }
}

/// y [n] = s * x.
void scale_forward(float* y, const float* x, float s, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = s * x[i];
}

/// dx [n] += s * dy.
void scale_backward(float* dx, const float* dy, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += s * dy[i];
}

/// dx [n] += dy (reshape's backward; its forward shares x's storage and computes nothing).
void reshape_backward(float* dx, const float* dy, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i];
}

Tensor add_op(const Tensor& a, const Tensor& b, bool with_relu) {
  const char* name = with_relu ? "add_relu" : "add";
  check(a.shape() == b.shape(), name, "b of a's shape " + shape_str(a.shape()), b);
  Tensor y = Tensor::empty(a.shape());
  const int64_t n = a.numel();
  add_forward(y.mutable_data(), a.data(), b.data(), n, with_relu);
  profiler::add_bytes(4.0 * 3 * n);  // a, b, y
  if (!needs_graph({&a, &b})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {a, b},
      [a, b, out, n, with_relu]() {
        float* da = detail::grad_or_null(a);
        float* db = detail::grad_or_null(b);
        // dy (and y with relu), each gradient read and written
        profiler::add_bytes(4.0 * n * ((with_relu ? 2 : 1) + (da ? 2 : 0) + (db ? 2 : 0)));
        add_backward(da, db, out->grad.data(), out->storage->data(), n, with_relu);
      },
      name);
  return y;
}

}  // namespace

Tensor relu(const Tensor& x) {
  profiler::Scope _prof("relu");
  Tensor y = Tensor::empty(x.shape());
  const int64_t n = x.numel();
  relu_forward(y.mutable_data(), x.data(), n);
  profiler::add_bytes(4.0 * 2 * n);  // x, y (the profiler's bytes: core/profiler.hpp)
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, n]() {
        profiler::add_bytes(4.0 * 4 * n);  // dx (read and written), dy, y
        relu_backward(x.grad_data(), out->grad.data(), out->storage->data(), n);
      },
      "relu");
  return y;
}

Tensor gelu(const Tensor& x) {
  profiler::Scope _prof("gelu");
  Tensor y = Tensor::empty(x.shape());
  const int64_t n = x.numel();
  kernels::gelu(y.mutable_data(), x.data(), n);
  profiler::add_bytes(4.0 * 2 * n);  // x, y
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, n]() {
        profiler::add_bytes(4.0 * 4 * n);  // dx (read and written), dy, x
        kernels::gelu_backward_add(x.grad_data(), out->grad.data(), x.data(), n);
      },
      "gelu");
  return y;
}

Tensor scale(const Tensor& x, float s) {
  profiler::Scope _prof("scale");
  Tensor y = Tensor::empty(x.shape());
  const int64_t n = x.numel();
  scale_forward(y.mutable_data(), x.data(), s, n);
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x}, [x, out, n, s]() { scale_backward(x.grad_data(), out->grad.data(), s, n); }, "scale");
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  profiler::Scope _prof("add");
  return add_op(a, b, false);
}

Tensor add_relu(const Tensor& a, const Tensor& b) {
  profiler::Scope _prof("add_relu");
  return add_op(a, b, true);
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  profiler::Scope _prof("reshape");
  if (shape_numel(shape) != x.numel()) {
    throw std::invalid_argument("reshape: cannot reshape " + shape_str(x.shape()) + " to " +
                                shape_str(shape));
  }
  Tensor y = x.view(shape);  // shares storage: no copy
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out]() {
        reshape_backward(x.grad_data(), out->grad.data(), static_cast<int64_t>(out->grad.size()));
      },
      "reshape");
  return y;
}

// No Scope of its own: flatten is a reshape and records the reshape node, so it is profiled as
// "reshape" (a second Scope here would count the same time twice).
Tensor flatten(const Tensor& x) {
  check(x.dim() >= 1, "flatten", "input [N, ...]", x);
  return reshape(x, {x.size(0), x.numel() / (x.size(0) ? x.size(0) : 1)});
}

}  // namespace minidl::ops
