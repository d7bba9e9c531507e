// The README's "Adding a layer" example, compiled and tested here so the README stays true:
// one class (a Module built from existing layers and ops) and one test (a gradient check).
#include <catch2/catch.hpp>

#include "core/ops.hpp"
#include "gradcheck.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"

namespace minidl {

/// conv3x3 (no bias) - BatchNorm2d - ReLU.  [N, in_channels, H, W] -> [N, out_channels, H, W].
/// Parameters: conv.weight, bn.weight, bn.bias; buffers: bn.running_mean, bn.running_var.
class ConvBNReLU : public Module {
 public:
  ConvBNReLU(int64_t in_channels, int64_t out_channels, Generator& gen) {
    conv = register_module(
        "conv", std::make_shared<Conv2d>(
                    Conv2dOptions(in_channels, out_channels, 3).padding(1).bias(false), gen));
    bn = register_module("bn", std::make_shared<BatchNorm2d>(out_channels));
  }
  Tensor forward(const Tensor& x) override { return ops::relu((*bn)((*conv)(x))); }
  std::string type_name() const override { return "ConvBNReLU"; }
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
};

}  // namespace minidl

TEST_CASE("README example layer: names and a gradient check through every parameter", "[layers]") {
  using namespace minidl;
  Generator gen(3);
  ConvBNReLU layer(2, 3, gen);
  CHECK(layer.state_dict().size() == 5);
  CHECK(layer.state_dict()[0].first == "conv.weight");
  // As in the README. (Train-mode BN normalizes with batch statistics, so the running-stat
  // updates of repeated calls do not change the function being checked.)
  Tensor x = minidl::testing::randn({4, 2, 5, 5}, gen, 1.0f, 0.0f, /*requires_grad=*/true);
  minidl::testing::gradcheck([&](const std::vector<Tensor>&) { return layer(x); },
                             {x, layer.conv->weight, layer.bn->weight, layer.bn->bias},
                             /*h=*/1e-3);  // small steps: ReLU's kink is near some inputs
}
