#include "layers/models/resnet.hpp"

#include <regex>
#include <stdexcept>

#include "core/ops.hpp"
#include "layers/models/registry.hpp"

namespace minidl {

BasicBlock::BasicBlock(int64_t in, int64_t out, bool downsample, Generator& gen) {
  const int64_t stride = downsample ? 2 : 1;
  conv1 = register_module(
      "conv1", std::make_shared<Conv2d>(
                   Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false), gen));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(out));
  conv2 = register_module(
      "conv2", std::make_shared<Conv2d>(Conv2dOptions(out, out, 3).padding(1).bias(false), gen));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out));
  if (downsample || in != out) {
    shortcut = register_module("shortcut", std::make_shared<Sequential>());
    shortcut->add(
        std::make_shared<Conv2d>(Conv2dOptions(in, out, 1).stride(stride).bias(false), gen));
    shortcut->add(std::make_shared<BatchNorm2d>(out));
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor h = bn1->forward_relu((*conv1)(x));  // relu(bn1(conv1(x))), fused
  // relu(bn2(conv2(h)) + shortcut(x)), fused
  return bn2->forward_add_relu((*conv2)(h), shortcut ? (*shortcut)(x) : x);
}

CifarResNet::CifarResNet(int64_t depth, int64_t width, int64_t num_classes, Generator& gen) {
  if (depth < 8 || depth > kMaxDepth || (depth - 2) % 6 != 0 || width < 1 || width > kMaxWidth) {
    throw std::invalid_argument("CIFAR ResNet depth must be 6k + 2 from 8 to " +
                                std::to_string(kMaxDepth) +
                                " (8, 14, 20, 32, 56, 110, 866, ...) "
                                "and width from 1 to " +
                                std::to_string(kMaxWidth) + ", got depth " + std::to_string(depth) +
                                ", width " + std::to_string(width));
  }
  conv = register_module(
      "conv", std::make_shared<Conv2d>(Conv2dOptions(3, width, 3).padding(1).bias(false), gen));
  bn = register_module("bn", std::make_shared<BatchNorm2d>(width));
  blocks = register_module("blocks", std::make_shared<Sequential>());
  const int64_t per_stage = (depth - 2) / 6;
  int64_t in = width;
  for (int64_t stage = 0; stage < 3; ++stage) {
    const int64_t out = width << stage;
    for (int64_t b = 0; b < per_stage; ++b) {
      blocks->add(std::make_shared<BasicBlock>(in, out, stage > 0 && b == 0, gen));
      in = out;
    }
  }
  fc = register_module("fc", std::make_shared<Linear>(LinearOptions(in, num_classes), gen));
}

Tensor CifarResNet::forward(const Tensor& x) {
  Tensor h = bn->forward_relu((*conv)(x));  // relu(bn(conv(x))), fused
  h = (*blocks)(h);
  return (*fc)(ops::global_avg_pool2d(h));
}

MINIDL_REGISTER_MODEL(
    resnet, "resnet<D>[_<W>] (D = 6k + 2, W default 16)",
    [](const std::string& name, const ModelOptions& o) -> std::shared_ptr<Module> {
      std::smatch m;
      static const std::regex re("resnet([0-9]+)(?:_([0-9]+))?");
      if (!std::regex_match(name, m, re)) return nullptr;
      Generator gen(o.seed);
      // More digits than any allowed size: refused before std::stoll.
      if (m[1].length() > 6 || (m[2].matched && m[2].length() > 6)) {
        throw std::invalid_argument("unknown model \"" + name.substr(0, 40) +
                                    "\": resnet<D>[_<W>] "
                                    "takes D = 6k + 2 from 8 to " +
                                    std::to_string(CifarResNet::kMaxDepth) + " and W from 1 to " +
                                    std::to_string(CifarResNet::kMaxWidth));
      }
      const int64_t depth = std::stoll(m[1]);
      const int64_t width = m[2].matched ? std::stoll(m[2]) : 16;
      auto model = std::make_shared<CifarResNet>(depth, width, o.num_classes, gen);
      init_batch_norms(*model, o, gen);
      return model;
    });

}  // namespace minidl
