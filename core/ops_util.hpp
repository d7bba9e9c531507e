// minidl — internal helpers shared by the op files (not part of the public API).
#pragma once

#include <stdexcept>
#include <string>

#include "core/autograd.hpp"
#include "core/tensor.hpp"

namespace minidl::detail {

/// Throws std::invalid_argument("<op>: <what>, got <shape>") unless `ok`.
inline void check(bool ok, const char* op, const std::string& what, const Tensor& got) {
  if (!ok) {
    throw std::invalid_argument(std::string(op) + ": expected " + what + ", got shape " +
                                shape_str(got.shape()));
  }
}

/// Gradient buffer of `t` if it takes a gradient, else nullptr.
inline float* grad_or_null(const Tensor& t) {
  return (t.defined() && t.requires_grad()) ? t.grad_data() : nullptr;
}

/// A gradient buffer that an op's backward writes every element of: `data` is null when no
/// gradient is needed; `fresh` means it was just allocated, uninitialized, so the op assigns (=)
/// instead of accumulating (+=) (Tensor::grad_for_write).
struct GradOut {
  float* data = nullptr;
  bool fresh = false;
};

/// Like grad_or_null, for an op that writes every element (see GradOut).
inline GradOut grad_for_write_or_null(const Tensor& t) {
  GradOut g;
  if (t.defined() && t.requires_grad()) g.data = t.grad_for_write(&g.fresh);
  return g;
}

}  // namespace minidl::detail
