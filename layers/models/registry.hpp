// minidl — the model zoo's registry: models are built from names ("resnet20", "resnet14_64",
// "cnn"). A model file registers itself with one MINIDL_REGISTER_MODEL line; nothing central
// changes when a model is added.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/enum_names.hpp"
#include "layers/module.hpp"

namespace minidl {

/// BatchNorm gamma init: fixed (1, PyTorch's default) or uniform (U[0, 1), as in the BN-only
/// paper's code, Frankle et al. 2021). beta is 0 either way.
enum class BnInit { kFixed, kUniform };
const EnumTable<BnInit>& enum_table(BnInit);

struct ModelOptions {
  uint64_t seed = 0;  ///< seeds every weight init
  int64_t num_classes = 10;
  BnInit bn_init = BnInit::kFixed;  ///< BatchNorm gamma init
};

/// Builds the model `name` if it handles it, else returns nullptr.
using ModelBuilder =
    std::function<std::shared_ptr<Module>(const std::string& name, const ModelOptions&)>;

/// Adds a builder; `pattern` describes the names it takes (for help and errors). Returns true.
bool register_model(const std::string& pattern, ModelBuilder builder);
/// Builds a model by name. Throws std::invalid_argument listing the known patterns.
std::shared_ptr<Module> create_model(const std::string& name, const ModelOptions& options = {});
/// The registered name patterns, e.g. "resnet<D>[_<W>]".
std::vector<std::string> model_patterns();

/// Applies options.bn_init to every BatchNorm in `model` (uniform draws from `gen`).
void init_batch_norms(Module& model, const ModelOptions& options, Generator& gen);

}  // namespace minidl

#define MINIDL_REGISTER_MODEL(id, pattern, builder) \
  static const bool minidl_model_registered_##id = ::minidl::register_model(pattern, builder)
