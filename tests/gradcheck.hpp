// minidl tests — finite-difference gradient checking.
//
// For an op f and a fixed random projection R of its output, L(x) = sum(f(x) * R). The
// analytic gradient dL/dx comes from backward(R); the numeric one from central differences
// (L(x + h e_i) - L(x - h e_i)) / 2h, accumulated in double.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/random.hpp"
#include "core/tensor.hpp"

namespace minidl::testing {

inline Tensor randn(const Shape& shape, Generator& gen, float scale = 1.0f, float shift = 0.0f,
                    bool requires_grad = false) {
  Tensor t(shape, requires_grad);
  for (float& v : t.mutable_vec()) v = shift + scale * gen.normal();
  return t;
}

/// Checks d sum(f(inputs) * R) / d inputs[k] for every k with requires_grad, every element
/// (or `max_checks` spread over the tensor). Fails with the input index, element and both values.
inline void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                      std::vector<Tensor> inputs, double h = 1e-2, double rtol = 2e-2,
                      double atol = 2e-3, int64_t max_checks = 200) {
  Generator gen(1234);
  Tensor y = f(inputs);
  Tensor r = randn(y.shape(), gen);
  for (Tensor& t : inputs)
    if (t.defined()) t.zero_grad();
  y.backward(r);
  auto loss = [&]() {
    Tensor out = f(inputs);
    double s = 0.0;
    for (int64_t i = 0; i < out.numel(); ++i) s += static_cast<double>(out.data()[i]) * r.data()[i];
    return s;
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& t = inputs[k];
    if (!t.defined() || !t.requires_grad()) continue;
    REQUIRE(t.has_grad());
    const std::vector<float> analytic(t.grad_data(), t.grad_data() + t.numel());
    const int64_t stride = std::max<int64_t>(1, t.numel() / max_checks);
    for (int64_t i = 0; i < t.numel(); i += stride) {
      const float saved = t.data()[i];
      t.mutable_data()[i] = static_cast<float>(saved + h);
      const double up = loss();
      t.mutable_data()[i] = static_cast<float>(saved - h);
      const double down = loss();
      t.mutable_data()[i] = saved;
      const double numeric = (up - down) / (2 * h);
      INFO("input " << k << " element " << i << ": analytic " << analytic[i] << ", numeric "
                    << numeric);
      CHECK(std::abs(analytic[i] - numeric) <= atol + rtol * std::abs(numeric));
    }
  }
}

}  // namespace minidl::testing
