#include "layers/models/registry.hpp"

#include <stdexcept>
#include <utility>

#include "layers/batch_norm.hpp"

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
                                      {BnInit::kUniform, "uniform", "gamma ~ U[0, 1) (open_lth)"}};
  return t;
}

void init_batch_norms(Module& model, const ModelOptions& options, Generator& gen) {
  for (BatchNorm* bn : model.modules_of<BatchNorm>()) {
    if (!bn->weight.defined()) continue;
    if (options.bn_init == BnInit::kUniform) {
      uniform_(bn->weight, 0.0f, 1.0f, gen);
    } else {
      bn->weight.fill_(1.0f);
    }
    bn->bias.fill_(0.0f);
  }
}

}  // namespace minidl
