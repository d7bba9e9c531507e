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

/// Like grad_or_null, for an op that writes every element: *fresh tells whether to assign.
inline float* grad_for_write_or_null(const Tensor& t, bool* fresh) {
  *fresh = false;
  return (t.defined() && t.requires_grad()) ? t.grad_for_write(fresh) : nullptr;
}

}  // namespace minidl::detail
