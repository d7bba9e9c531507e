#include "layers/conv2d.hpp"

#include <stdexcept>

#include "core/ops.hpp"

namespace minidl {

Conv2d::Conv2d(const Conv2dOptions& o, Generator& gen)
    : in_channels(o.in_channels_),
      out_channels(o.out_channels_),
      kernel_size(o.kernel_size_),
      stride(o.stride_),
      padding(o.padding_) {
  if (in_channels < 1 || out_channels < 1 || kernel_size < 1 || stride < 1 || padding < 0) {
    throw std::invalid_argument(
        "Conv2d: expected in_channels, out_channels, kernel_size and "
        "stride >= 1 and padding >= 0");
  }
  weight =
      register_parameter("weight", Tensor({out_channels, in_channels, kernel_size, kernel_size}));
  kaiming_normal_(weight, gen);
  if (o.bias_) bias = register_parameter("bias", Tensor({out_channels}));
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
