#include "optim/freeze.hpp"

#include <stdexcept>

#include "core/random.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/group_norm.hpp"
#include "layers/layer_norm.hpp"
#include "layers/linear.hpp"

namespace minidl::optim {

const EnumTable<TrainOnly>& enum_table(TrainOnly) {
  static const EnumTable<TrainOnly> t = {
      {TrainOnly::kAll, "all", "every parameter"},
      {TrainOnly::kBn, "bn",
       "the normalization layers' gamma and beta only (BatchNorm's, or GroupNorm's when the "
       "model normalizes with gn or ln)"},
      {TrainOnly::kFc, "fc", "the output layer only"},
      {TrainOnly::kBnFc, "bn+fc", "the normalization layers and the output layer"},
      {TrainOnly::kRandomPerChannel, "random-per-channel",
       "two random conv weights per output channel (the paper's control)"}};
  return t;
}

std::vector<UpdateMask> apply_train_only(Module& model, TrainOnly mode_value, uint64_t seed) {
  const std::string mode = name_of(mode_value);  // for the messages
  for (Tensor& p : model.parameters()) p.set_requires_grad(mode_value == TrainOnly::kAll);
  if (mode_value == TrainOnly::kAll) return {};

  Linear* fc = nullptr;
  const std::vector<Conv2d*> convs = model.modules_of<Conv2d>();
  for (Linear* l : model.modules_of<Linear>()) fc = l;  // the last Linear in module order
  if (mode_value == TrainOnly::kBn || mode_value == TrainOnly::kBnFc) {
    // The normalization layers' gammas and betas: BatchNorm's, or GroupNorm's and LayerNorm's in
    // a model built with another norm (`--norm gn`).
    std::vector<Tensor> norm_params;
    for (auto& [name, m] : model.named_modules()) {
      if (auto* b = dynamic_cast<BatchNorm*>(m)) {
        norm_params.insert(norm_params.end(), {b->weight, b->bias});
      } else if (auto* g = dynamic_cast<GroupNorm*>(m)) {
        norm_params.insert(norm_params.end(), {g->weight, g->bias});
      } else if (auto* l = dynamic_cast<LayerNorm*>(m)) {
        norm_params.insert(norm_params.end(), {l->weight, l->bias});
      }
    }
    if (norm_params.empty()) {
      throw std::invalid_argument("train-only mode " + mode +
                                  ": the model has no normalization layer (BatchNorm, GroupNorm "
                                  "or LayerNorm)");
    }
    for (Tensor& p : norm_params)
      if (p.defined()) p.set_requires_grad(true);
  }
  if (mode_value == TrainOnly::kFc || mode_value == TrainOnly::kBnFc) {
    if (!fc)
      throw std::invalid_argument("train-only mode " + mode + ": the model has no Linear layer");
    fc->weight.set_requires_grad(true);
    if (fc->bias.defined()) fc->bias.set_requires_grad(true);
  }
  std::vector<UpdateMask> masks;
  if (mode_value == TrainOnly::kRandomPerChannel) {
    Generator gen(seed ^ 0x5eedf00dull);
    for (Conv2d* c : convs) {
      Tensor& w = c->weight;
      const int64_t per_out = w.numel() / w.size(0);
      if (per_out < 2)
        throw std::invalid_argument("random-per-channel needs >= 2 weights per channel");
      UpdateMask um{w, std::vector<uint8_t>(w.numel(), 0)};
      for (int64_t o = 0; o < w.size(0); ++o) {
        const int64_t a = static_cast<int64_t>(gen.randint(per_out));
        int64_t b = static_cast<int64_t>(gen.randint(per_out - 1));
        if (b >= a) ++b;  // two distinct weights
        um.mask[o * per_out + a] = 1;
        um.mask[o * per_out + b] = 1;
      }
      w.set_requires_grad(true);
      masks.push_back(std::move(um));
    }
  }
  return masks;
}

int64_t count_trainable(const Module& model, const std::vector<UpdateMask>& masks) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    const UpdateMask* m = nullptr;
    for (const auto& um : masks)
      if (um.param.same(p)) m = &um;
    if (!m) {
      n += p.numel();
    } else {
      for (uint8_t v : m->mask) n += v;
    }
  }
  return n;
}

}  // namespace minidl::optim
