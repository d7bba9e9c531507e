// minidl — linear forward and backward.
//   y = x W^T + b                       x [N, DI], W [DO, DI], b [DO]
//   dx += dy W,  dW += dy^T x,  db += sum_n dy
// FLOPs (profiler): 2 N DI DO forward, and as many per gradient GEMM (dx, dW) backward.
#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"

namespace minidl::ops {

using detail::check;

namespace {

/// y [N, DO] = x [N, DI] W^T + b, W [DO, DI], b [DO] or null. One GEMM per row:
/// a row's result then does not depend on the batch size (BLAS kernels may sum in another
/// order for another M), so one image gives exactly its row of a batch.
void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t DI,
                    int64_t DO) {
  if (b) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < DO; ++o) y[n * DO + o] = b[o];
  }
  for (int64_t n = 0; n < N; ++n) {
    kernels::gemm(false, true, 1, DO, DI, 1.0f, x + n * DI, w, b ? 1.0f : 0.0f, y + n * DO);
  }
}

/// From dy [N, DO]: dx [N, DI] += dy W, dW [DO, DI] += dy^T x, db [DO] += sum_n dy; each
/// output may be null.
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t N, int64_t DI, int64_t DO) {
  if (dx) kernels::gemm(false, false, N, DI, DO, 1.0f, dy, w, 1.0f, dx);
  if (dw) kernels::gemm(true, false, DO, DI, N, 1.0f, dy, x, 1.0f, dw);
  if (db) {
    for (int64_t o = 0; o < DO; ++o) {
      double s = 0.0;
      for (int64_t n = 0; n < N; ++n) s += dy[n * DO + o];
      db[o] += static_cast<float>(s);
    }
  }
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  profiler::Scope _prof("linear");
  check(x.dim() == 2, "linear", "input [N, D_in]", x);
  check(weight.dim() == 2 && weight.size(1) == x.size(1), "linear",
        "weight [D_out, " + std::to_string(x.size(1)) + "]", weight);
  const int64_t N = x.size(0), DI = x.size(1), DO = weight.size(0);
  if (bias.defined())
    check(bias.dim() == 1 && bias.size(0) == DO, "linear", "bias [" + std::to_string(DO) + "]",
          bias);
  Tensor y = Tensor::empty({N, DO});
  linear_forward(y.mutable_data(), x.data(), weight.data(), bias.defined() ? bias.data() : nullptr,
                 N, DI, DO);
  const double gemm_flops = 2.0 * static_cast<double>(N) * DI * DO;
  profiler::add_flops(gemm_flops);
  const double bytes = 4.0 * (static_cast<double>(N) * DI + static_cast<double>(DI) * DO +
                              static_cast<double>(N) * DO);  // x, w, y (core/profiler.hpp)
  profiler::add_bytes(bytes);
  if (!needs_graph({&x, &weight, &bias})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias},
      [x, weight, bias, out, N, DI, DO, gemm_flops, bytes]() {
        float* dx = detail::grad_or_null(x);
        float* dw = detail::grad_or_null(weight);
        profiler::add_flops((dx ? gemm_flops : 0.0) + (dw ? gemm_flops : 0.0));
        profiler::add_bytes((dx ? bytes : 0.0) + (dw ? bytes : 0.0));  // dy, w, dx; dy, x, dw
        linear_backward(dx, dw, detail::grad_or_null(bias), out->grad.data(), x.data(),
                        weight.data(), N, DI, DO);
      },
      "linear");
  return y;
}

}  // namespace minidl::ops
