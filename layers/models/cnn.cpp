// minidl — "cnn": a small plain network for quick runs (141,034 parameters).
//   [conv3x3 - BN - ReLU] x2 (32) - maxpool 2 - [conv3x3 - BN - ReLU] x2 (64) - maxpool 2
//   - conv3x3 (128) - BN - ReLU - maxpool 2 - global average pool - Linear(128 -> num_classes)
// Shape: [N, 3, 32, 32] -> logits [N, num_classes]. A Sequential: state names "0.weight", ...
#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/models/registry.hpp"
#include "layers/sequential.hpp"
#include "layers/simple.hpp"

namespace minidl {

static std::shared_ptr<Module> make_cnn(const ModelOptions& o) {
  Generator gen(o.seed);
  auto net = std::make_shared<Sequential>();
  auto conv_bn_relu = [&](int64_t in, int64_t out) {
    net->add(std::make_shared<Conv2d>(Conv2dOptions(in, out, 3).padding(1).bias(false), gen));
    net->add(std::make_shared<BatchNorm2d>(out));
    net->add(std::make_shared<ReLU>());
  };
  conv_bn_relu(3, 32);
  conv_bn_relu(32, 32);
  net->add(std::make_shared<MaxPool2d>(2));
  conv_bn_relu(32, 64);
  conv_bn_relu(64, 64);
  net->add(std::make_shared<MaxPool2d>(2));
  conv_bn_relu(64, 128);
  net->add(std::make_shared<MaxPool2d>(2));
  net->add(std::make_shared<GlobalAvgPool2d>());
  net->add(std::make_shared<Linear>(LinearOptions(128, o.num_classes), gen));
  init_batch_norms(*net, o, gen);
  return net;
}

MINIDL_REGISTER_MODEL(cnn, "cnn", [](const std::string& name, const ModelOptions& o) {
  if (name != "cnn") return std::shared_ptr<Module>();
  require_batch_norm(o, name);
  return make_cnn(o);
});

}  // namespace minidl
