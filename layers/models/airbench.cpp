#include "layers/models/airbench.hpp"

#include <cmath>
#include <stdexcept>

#include "core/ops.hpp"
#include "layers/models/registry.hpp"
#include "layers/patch_whitening.hpp"

namespace minidl {

namespace {

/// torch.nn.Conv2d / Linear's default weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
/// fan_in = numel / shape[0].
void torch_default_init_(Tensor& w, Generator& gen) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(w.numel() / w.size(0)));
  uniform_(w, -bound, bound, gen);
}

/// A conv as airbench's Conv: PyTorch's default init, then Dirac on the first in_channels
/// filters.
std::shared_ptr<Conv2d> make_conv(const Conv2dOptions& o, Generator& gen) {
  Generator scratch(0);  // Conv2d's own init is overwritten
  auto conv = std::make_shared<Conv2d>(o, scratch);
  torch_default_init_(conv->weight, gen);
  if (conv->bias.defined()) conv->bias.fill_(0.0f);
  dirac_(conv->weight, o.in_channels_);
  return conv;
}

std::shared_ptr<BatchNorm2d> make_norm(int64_t channels) {
  auto bn = std::make_shared<BatchNorm2d>(BatchNormOptions(channels).momentum(0.4f).eps(1e-12f));
  bn->weight.set_requires_grad(false);
  return bn;
}

}  // namespace

ConvGroup::ConvGroup(int64_t in, int64_t out, Generator& gen) {
  conv1 =
      register_module("conv1", make_conv(Conv2dOptions(in, out, 3).padding(1).bias(false), gen));
  norm1 = register_module("norm1", make_norm(out));
  conv2 =
      register_module("conv2", make_conv(Conv2dOptions(out, out, 3).padding(1).bias(false), gen));
  norm2 = register_module("norm2", make_norm(out));
}

Tensor ConvGroup::forward(const Tensor& x) {
  Tensor h = ops::max_pool2d((*conv1)(x), 2, 2, 0);
  h = ops::gelu((*norm1)(h));
  return ops::gelu((*norm2)((*conv2)(h)));
}

Airbench94::Airbench94(int64_t num_classes, Generator& gen) {
  if (num_classes < 1) throw std::invalid_argument("Airbench94: num_classes must be >= 1");
  whiten = register_module("whiten", make_conv(Conv2dOptions(3, 24, kWhitenKernel), gen));
  whiten->weight.set_requires_grad(false);
  block1 = register_module("block1", std::make_shared<ConvGroup>(24, 64, gen));
  block2 = register_module("block2", std::make_shared<ConvGroup>(64, 256, gen));
  block3 = register_module("block3", std::make_shared<ConvGroup>(256, 256, gen));
  Generator scratch(0);
  head = register_module(
      "head", std::make_shared<Linear>(LinearOptions(256, num_classes).bias(false), scratch));
  torch_default_init_(head->weight, gen);
}

Tensor Airbench94::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != 3 || x.size(2) != 32 || x.size(3) != 32) {
    throw std::invalid_argument("Airbench94: expected input [N, 3, 32, 32], got " +
                                shape_str(x.shape()));
  }
  Tensor h = ops::gelu((*whiten)(x));             // [N, 24, 31, 31]
  h = (*block3)((*block2)((*block1)(h)));         // [N, 256, 3, 3]
  h = ops::flatten(ops::max_pool2d(h, 3, 3, 0));  // [N, 256]
  return ops::scale((*head)(h), kLogitScale);     // [N, classes]
}

void Airbench94::init_whitening(const Tensor& images, double eps) {
  const Tensor w = patch_whitening_weight(images, kWhitenKernel, eps);
  whiten->weight.copy_(w);
}

static std::shared_ptr<Module> make_airbench(const std::string& name, const ModelOptions& o) {
  if (name != "airbench94") return nullptr;
  require_batch_norm(o, name);
  Generator gen(o.seed);
  auto model = std::make_shared<Airbench94>(o.num_classes, gen);
  init_batch_norms(*model, o, gen);
  return model;
}

MINIDL_REGISTER_MODEL(airbench94, "airbench94", make_airbench);

}  // namespace minidl
