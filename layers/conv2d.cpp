#include "layers/conv2d.hpp"

#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool with_bias,
               Generator& gen)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p) {
  weight = register_parameter("weight", Tensor({out, in, k, k}));
  kaiming_normal_(weight, gen);
  if (with_bias) bias = register_parameter("bias", Tensor({out}));
}

Tensor Conv2d::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != in_channels) {
    throw std::invalid_argument("Conv2d(" + std::to_string(in_channels) + ", " +
                                std::to_string(out_channels) + "): expected input [N, " +
                                std::to_string(in_channels) + ", H, W], got " +
                                shape_str(x.shape()));
  }
  return ops::conv2d(x, weight, bias, stride, padding);
}

}  // namespace minidl
