#include "layers/models/registry.hpp"

#include <stdexcept>
#include <utility>

#include "core/system.hpp"
#include "layers/batch_norm.hpp"
#include "layers/group_norm.hpp"
#include "layers/layer_norm.hpp"

namespace minidl {

namespace {
std::vector<std::pair<std::string, ModelBuilder>>& registry() {
  static std::vector<std::pair<std::string, ModelBuilder>> r;
  return r;
}
}  // namespace

bool register_model(const std::string& pattern, ModelBuilder builder) {
  registry().emplace_back(pattern, std::move(builder));
  return true;
}

std::vector<std::string> model_patterns() {
  std::vector<std::string> out;
  for (auto& [p, b] : registry()) out.push_back(p);
  return out;
}

void check_model_size(const std::string& name, int64_t parameters) {
  if (parameters <= kMaxModelParameters) return;
  throw std::invalid_argument("model \"" + name.substr(0, 40) + "\" would have " +
                              with_thousands(parameters) + " parameters, more than the " +
                              with_thousands(kMaxModelParameters) + " minidl builds");
}

std::shared_ptr<Module> create_model(const std::string& name, const ModelOptions& options) {
  for (auto& [pattern, build] : registry()) {
    if (auto m = build(name, options)) return m;
  }
  std::string known;
  for (auto& p : model_patterns()) known += (known.empty() ? "" : ", ") + p;
  throw std::invalid_argument("unknown model \"" + name + "\"; known: " + known);
}

const EnumTable<BnInit>& enum_table(BnInit) {
  static const EnumTable<BnInit> t = {{BnInit::kFixed, "fixed", "gamma = 1 (PyTorch's default)"},
                                      {BnInit::kUniform, "uniform", "gamma ~ U[0, 1) (open_lth)"},
                                      {BnInit::kZeroResidual, "zero-residual",
                                       "gamma = 1, but 0 on each residual block's last layer "
                                       "(bn2; Goyal et al. 2017)"}};
  return t;
}

const EnumTable<NormKind>& enum_table(NormKind) {
  static const EnumTable<NormKind> t = {
      {NormKind::kBatch, "bn", "BatchNorm2d"},
      {NormKind::kGroup, "gn", "GroupNorm over groups of channels (Wu & He 2018)"},
      {NormKind::kLayer, "ln",
       "LayerNorm as Wu & He define it for conv nets: GroupNorm with one group (statistics over "
       "C, H, W of each image, a gamma and beta per channel)"},
      {NormKind::kNone, "none", "no normalization layer"}};
  return t;
}

void init_batch_norms(Module& model, const ModelOptions& options, Generator& gen) {
  for (auto& [name, m] : model.named_modules()) {  // module order: the draws follow it
    Tensor weight, bias;
    if (auto* bn = dynamic_cast<BatchNorm*>(m)) {
      weight = bn->weight, bias = bn->bias;
    } else if (auto* gn = dynamic_cast<GroupNorm*>(m)) {
      weight = gn->weight, bias = gn->bias;
    } else if (auto* ln = dynamic_cast<LayerNorm*>(m)) {
      weight = ln->weight, bias = ln->bias;
    }
    if (!weight.defined()) continue;
    if (options.bn_init == BnInit::kUniform) {
      uniform_(weight, 0.0f, 1.0f, gen);
    } else {
      const bool last_of_branch = name.size() >= 4 && name.compare(name.size() - 4, 4, ".bn2") == 0;
      weight.fill_(options.bn_init == BnInit::kZeroResidual && last_of_branch ? 0.0f : 1.0f);
    }
    bias.fill_(0.0f);
  }
}

void require_batch_norm(const ModelOptions& options, const std::string& model) {
  if (options.norm == NormKind::kBatch) return;
  throw std::invalid_argument("norm " + name_of(options.norm) + " is not available for model " +
                              model.substr(0, 40) +
                              ", whose normalization is BatchNorm (only the resnet<D>[_<W>] "
                              "models take another norm)");
}

}  // namespace minidl
