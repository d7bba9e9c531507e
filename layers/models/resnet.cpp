#include "layers/models/resnet.hpp"

#include <algorithm>
#include <regex>
#include <stdexcept>
#include <tuple>

#include "core/ops.hpp"
#include "layers/group_norm.hpp"
#include "layers/models/registry.hpp"
#include "layers/patch_whitening.hpp"
#include "layers/simple.hpp"

namespace minidl {

std::shared_ptr<Module> make_norm_layer(NormKind norm, int64_t gn_groups, int64_t channels) {
  switch (norm) {
    case NormKind::kBatch:
      break;
    case NormKind::kGroup:
    case NormKind::kLayer: {
      const int64_t groups = norm == NormKind::kLayer ? 1 : std::min(gn_groups, channels);
      if (groups < 1 || channels % groups != 0) {
        throw std::invalid_argument(
            "gn_groups " + std::to_string(gn_groups) + " gives a GroupNorm of " +
            std::to_string(groups) + " groups on " + std::to_string(channels) +
            " channels; each layer takes min(gn_groups, channels) groups, which must divide its "
            "channels");
      }
      return std::make_shared<GroupNorm>(GroupNormOptions(groups, channels));
    }
    case NormKind::kNone:
      return std::make_shared<Identity>();
  }
  return std::make_shared<BatchNorm2d>(channels);
}

BasicBlock::BasicBlock(int64_t in, int64_t out, bool downsample, Generator& gen, NormKind norm,
                       int64_t gn_groups)
    : norm_kind_(norm) {
  const int64_t stride = downsample ? 2 : 1;
  conv1 = register_module(
      "conv1", std::make_shared<Conv2d>(
                   Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false), gen));
  norm1 = register_module("bn1", make_norm_layer(norm, gn_groups, out));
  conv2 = register_module(
      "conv2", std::make_shared<Conv2d>(Conv2dOptions(out, out, 3).padding(1).bias(false), gen));
  norm2 = register_module("bn2", make_norm_layer(norm, gn_groups, out));
  bn1 = std::dynamic_pointer_cast<BatchNorm2d>(norm1);
  bn2 = std::dynamic_pointer_cast<BatchNorm2d>(norm2);
  if (downsample || in != out) {
    shortcut = register_module("shortcut", std::make_shared<Sequential>());
    shortcut_conv = shortcut->add(
        std::make_shared<Conv2d>(Conv2dOptions(in, out, 1).stride(stride).bias(false), gen));
    shortcut_norm = shortcut->add(make_norm_layer(norm, gn_groups, out));
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  // c = conv1(x) and s = shortcut(x). With a projection shortcut, both convolutions come from one
  // column matrix per image (ops::conv2d_with_projection), after the forward pre-hooks that
  // calling the shortcut, conv1 and the shortcut's conv would run.
  Tensor c, s = x;
  if (shortcut) {
    shortcut->run_forward_pre_hooks(x);
    conv1->run_forward_pre_hooks(x);
    shortcut_conv->run_forward_pre_hooks(x);
    std::tie(c, s) = ops::conv2d_with_projection(x, conv1->weight, shortcut_conv->weight,
                                                 conv1->stride, conv1->padding);
    s = (*shortcut_norm)(s);
  } else {
    c = (*conv1)(x);
  }
  if (norm_kind_ == NormKind::kBatch) {
    Tensor h = bn1->forward_relu(c);               // relu(bn1(conv1(x))), fused
    return bn2->forward_add_relu((*conv2)(h), s);  // relu(bn2(conv2(h)) + shortcut(x)), fused
  }
  Tensor h = ops::relu((*norm1)(c));               // relu(norm1(conv1(x)))
  return ops::add_relu((*norm2)((*conv2)(h)), s);  // relu(norm2(conv2(h)) + shortcut(x))
}

CifarResNet::CifarResNet(int64_t depth, int64_t width, int64_t num_classes, Generator& gen,
                         NormKind norm_kind, int64_t gn_groups)
    : norm_kind_(norm_kind) {
  if (depth < 8 || depth > kMaxDepth || (depth - 2) % 6 != 0 || width < 1 || width > kMaxWidth) {
    throw std::invalid_argument("CIFAR ResNet depth must be 6k + 2 from 8 to " +
                                std::to_string(kMaxDepth) +
                                " (8, 14, 20, 32, 56, 110, 866, ...) "
                                "and width from 1 to " +
                                std::to_string(kMaxWidth) + ", got depth " + std::to_string(depth) +
                                ", width " + std::to_string(width));
  }
  if (norm_kind == NormKind::kGroup) {  // every stage checked before any weight is drawn
    if (gn_groups < 1) {
      throw std::invalid_argument("gn_groups must be >= 1, got " + std::to_string(gn_groups));
    }
    for (int64_t stage = 0; stage < 3; ++stage) {
      const int64_t c = width << stage, groups = std::min(gn_groups, c);
      if (c % groups != 0) {
        throw std::invalid_argument(
            "gn_groups " + std::to_string(gn_groups) + " does not fit resnet" +
            std::to_string(depth) + " of width " + std::to_string(width) + ": its stages have " +
            std::to_string(width) + ", " + std::to_string(2 * width) + " and " +
            std::to_string(4 * width) + " channels, and a layer of C channels takes min(" +
            "gn_groups, C) groups, which must divide C (" + std::to_string(groups) +
            " does not divide " + std::to_string(c) + ")");
      }
    }
  }
  conv = register_module(
      "conv", std::make_shared<Conv2d>(Conv2dOptions(3, width, 3).padding(1).bias(false), gen));
  norm = register_module("bn", make_norm_layer(norm_kind, gn_groups, width));
  bn = std::dynamic_pointer_cast<BatchNorm2d>(norm);
  blocks = register_module("blocks", std::make_shared<Sequential>());
  const int64_t per_stage = (depth - 2) / 6;
  int64_t in = width;
  for (int64_t stage = 0; stage < 3; ++stage) {
    const int64_t out = width << stage;
    for (int64_t b = 0; b < per_stage; ++b) {
      blocks->add(
          std::make_shared<BasicBlock>(in, out, stage > 0 && b == 0, gen, norm_kind, gn_groups));
      in = out;
    }
  }
  fc = register_module("fc", std::make_shared<Linear>(LinearOptions(in, num_classes), gen));
}

int64_t CifarResNet::parameter_count(int64_t depth, int64_t width, int64_t num_classes,
                                     NormKind norm) {
  const int64_t affine = norm == NormKind::kNone ? 0 : 2;  // gamma and beta per channel
  int64_t n = 3 * 9 * width + affine * width;              // the stem
  const int64_t per_stage = (depth - 2) / 6;
  int64_t in = width;
  for (int64_t stage = 0; stage < 3; ++stage) {
    const int64_t out = width << stage;
    for (int64_t b = 0; b < per_stage; ++b) {
      n += 9 * in * out + 9 * out * out + 2 * affine * out;
      if (in != out || (stage > 0 && b == 0)) n += in * out + affine * out;  // the shortcut
      in = out;
    }
  }
  return n + in * num_classes + num_classes;
}

void CifarResNet::init_stem_whitening(const Tensor& images, double eps) {
  const int64_t width = conv->weight.size(0), patch = 3 * 3 * 3;
  if (width % 2 != 0 || width > 2 * patch) {
    throw std::invalid_argument(
        "stem whitening needs an even stem width of at most 54 (each of the 27 principal "
        "components of a 3x3 RGB patch and its negative), got width " +
        std::to_string(width));
  }
  if (images.dim() != 4 || images.size(1) != 3) {
    throw std::invalid_argument("stem whitening: expected images [N, 3, H, W], got " +
                                shape_str(images.shape()));
  }
  conv->weight.copy_(patch_whitening_weight(images, 3, eps, width / 2));
}

Tensor CifarResNet::forward(const Tensor& x) {
  Tensor h = norm_kind_ == NormKind::kBatch
                 ? bn->forward_relu((*conv)(x))     // relu(bn(conv(x))), fused
                 : ops::relu((*norm)((*conv)(x)));  // relu(norm(conv(x)))
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
      const int64_t groups = o.gn_groups;
      if (depth >= 8 && depth <= CifarResNet::kMaxDepth && width >= 1 &&
          width <= CifarResNet::kMaxWidth) {
        check_model_size(name, CifarResNet::parameter_count(depth, width, o.num_classes, o.norm));
      }
      auto model = std::make_shared<CifarResNet>(depth, width, o.num_classes, gen, o.norm, groups);
      init_batch_norms(*model, o, gen);
      return model;
    });

}  // namespace minidl
