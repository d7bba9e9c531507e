#include "layers/models/vgg.hpp"

#include <regex>
#include <stdexcept>

#include "core/ops.hpp"
#include "layers/activation_noise.hpp"
#include "layers/models/registry.hpp"
#include "layers/simple.hpp"

namespace minidl {

namespace {
/// Configuration A (Simonyan & Zisserman 2015, Table 1): conv widths, 0 = max-pool.
constexpr int64_t kConfigA[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
constexpr int64_t kInputSize = 32;  // CIFAR-10; five pools bring it to 1x1
}  // namespace

VGG::VGG(int64_t k, bool batch_norm, int64_t num_classes, Generator& gen, bool noisy_bn,
         uint64_t noise_seed) {
  if (noisy_bn && !batch_norm) throw std::invalid_argument("VGG: noisy_bn requires batch_norm");
  if (!valid_width_divisor(k) || num_classes < 1) {
    throw std::invalid_argument(
        "VGG: the width divisor must divide 64 (1, 2, 4, 8, 16, 32 or 64) "
        "and num_classes be >= 1, got divisor " +
        std::to_string(k) + ", num_classes " + std::to_string(num_classes));
  }
  // The layers' own default inits are overwritten below; they draw from a scratch stream so
  // that `gen` is drawn exactly in torchvision's order.
  Generator scratch(0);
  features = register_module("features", std::make_shared<Sequential>());
  int64_t in = 3;
  for (int64_t v : kConfigA) {
    if (v == 0) {
      features->add(std::make_shared<MaxPool2d>(2, 2));
      continue;
    }
    const int64_t out = v / k;
    auto conv = features->add(
        std::make_shared<Conv2d>(Conv2dOptions(in, out, 3).padding(1).bias(!batch_norm), scratch));
    kaiming_normal_fan_out_(conv->weight, gen);
    if (conv->bias.defined()) conv->bias.fill_(0.0f);
    if (batch_norm) features->add(std::make_shared<BatchNorm2d>(out));  // weight 1, bias 0
    if (noisy_bn) {
      const uint64_t layer_seed = splitmix64(noise_seed ^ splitmix64(features->children().size()));
      features->add(std::make_shared<ActivationNoise>(out, layer_seed));
    }
    features->add(std::make_shared<ReLU>());
    in = out;
  }
  classifier = register_module("classifier",
                               std::make_shared<Linear>(LinearOptions(in, num_classes), scratch));
  normal_(classifier->weight, 0.0f, 0.01f, gen);
  classifier->bias.fill_(0.0f);
}

Tensor VGG::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != 3 || x.size(2) != kInputSize || x.size(3) != kInputSize) {
    throw std::invalid_argument("VGG: expected input [N, 3, 32, 32], got " + shape_str(x.shape()));
  }
  const auto& layers = features->children();
  Tensor h = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    Module* m = layers[i].second.get();
    auto* bn = dynamic_cast<BatchNorm*>(m);
    if (bn && i + 1 < layers.size() && dynamic_cast<ReLU*>(layers[i + 1].second.get())) {
      h = bn->forward_relu(h);  // relu(bn(h)), fused; the ReLU at i + 1 is thereby applied
      ++i;
    } else {
      h = (*m)(h);
    }
  }
  return (*classifier)(ops::flatten(h));  // [N, 512 / k, 1, 1] -> [N, 512 / k] -> [N, classes]
}

/// Builds "vgg11[_bn|_noisybn][_w<k>]"; nullptr for a name that is not
/// vgg<digits>[_bn|_noisybn][_w<digits>].
static std::shared_ptr<Module> make_vgg(const std::string& name, const ModelOptions& o) {
  std::smatch m;
  static const std::regex re("vgg([0-9]+)(_bn|_noisybn)?(?:_w([0-9]+))?");
  if (!std::regex_match(name, m, re)) return nullptr;
  const std::string shown = name.substr(0, 40);
  if (m[1] != "11") {
    throw std::invalid_argument(
        "unknown model \"" + shown +
        "\": only VGG-A (11 weight layers) "
        "is implemented: vgg11, vgg11_bn, vgg11_noisybn, vgg11_w<k>, vgg11_bn_w<k>, "
        "vgg11_noisybn_w<k>");
  }
  int64_t k = 1;
  if (m[3].matched) {
    // Compared as text: no std::stoll overflow, and one spelling per model ("w04" is refused).
    static const char* const allowed[] = {"1", "2", "4", "8", "16", "32", "64"};
    k = 0;
    for (const char* a : allowed) {
      if (m[3] == a) k = std::stoll(a);
    }
    if (k == 0) {
      throw std::invalid_argument("model \"" + shown +
                                  "\": the width divisor k of "
                                  "vgg11[_bn]_w<k> must divide 64 (the narrowest width) exactly: "
                                  "1, 2, 4, 8, 16, 32 or 64");
    }
  }
  require_batch_norm(o, name);
  Generator gen(o.seed);
  const bool noisy = m[2] == "_noisybn";
  auto model = std::make_shared<VGG>(k, m[2].matched, o.num_classes, gen, noisy,
                                     splitmix64(o.seed ^ 0x6e6f6973794e4f49ull));
  init_batch_norms(*model, o, gen);
  return model;
}

MINIDL_REGISTER_MODEL(vgg, "vgg11[_bn|_noisybn][_w<k>] (k divides 64)", make_vgg);

}  // namespace minidl
