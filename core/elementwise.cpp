// minidl — elementwise ops and reshapes, forward and backward.
//   relu:      y = max(x, 0);        dx += dy * (y > 0)
//   add:       y = a + b;            da += dy, db += dy
//   add_relu:  y = max(a + b, 0);    da += dy * (y > 0), db likewise
//   reshape:   same values;          dx += dy (viewed in x's shape)
#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"

namespace minidl::ops {

using detail::check;

Tensor relu(const Tensor& x) {
  profiler::Scope _prof("relu");
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data();
  float* yd = y.data();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) yd[i] = xd[i] > 0.0f ? xd[i] : 0.0f;
  if (!needs_graph({&x})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x},
      [x, out, n]() mutable {
        const float* dy = out->grad.data();
        const float* yd = out->storage->data();
        float* dx = x.grad_data();
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; ++i) dx[i] += yd[i] > 0.0f ? dy[i] : 0.0f;
      },
      "relu");
  return y;
}

static Tensor add_impl(const Tensor& a, const Tensor& b, bool with_relu) {
  const char* name = with_relu ? "add_relu" : "add";
  check(a.shape() == b.shape(), name, "b of a's shape " + shape_str(a.shape()), b);
  Tensor y = Tensor::empty(a.shape());
  const float* ad = a.data();
  const float* bd = b.data();
  float* yd = y.data();
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float s = ad[i] + bd[i];
    yd[i] = (with_relu && s < 0.0f) ? 0.0f : s;
  }
  if (!needs_graph({&a, &b})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {a, b},
      [a, b, out, n, with_relu]() mutable {
        const float* dy = out->grad.data();
        const float* yd = out->storage->data();
        float* da = detail::grad_or_null(a);
        float* db = detail::grad_or_null(b);
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; ++i) {
          const float g = (with_relu && !(yd[i] > 0.0f)) ? 0.0f : dy[i];
          if (da) da[i] += g;
          if (db) db[i] += g;
        }
      },
      name);
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  profiler::Scope _prof("add");
  return add_impl(a, b, false);
}

Tensor add_relu(const Tensor& a, const Tensor& b) {
  profiler::Scope _prof("add_relu");
  return add_impl(a, b, true);
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
      [x, out]() mutable {
        const float* dy = out->grad.data();
        float* dx = x.grad_data();
        for (size_t i = 0; i < out->grad.size(); ++i) dx[i] += dy[i];
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
