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

/// Normalization layers' gamma init: fixed (1, PyTorch's default), uniform (U[0, 1), as in the
/// BN-only paper's code, Frankle et al. 2021) or zero-residual (1, except 0 on the last
/// normalization layer of each residual branch, `blocks.<i>.bn2`, so that every block starts as
/// its shortcut: Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 5.1; torchvision's
/// zero_init_residual). beta is 0 in each. Applies to BatchNorm and to the GroupNorm or LayerNorm
/// of a model built with another NormKind; zero-residual equals fixed on models without blocks.
enum class BnInit { kFixed, kUniform, kZeroResidual };
const EnumTable<BnInit>& enum_table(BnInit);

/// The normalization layer of the CIFAR ResNets (layers/models/resnet.hpp); names bn, gn, ln,
/// none. bn: BatchNorm2d (the default; the fused BN paths). gn: GroupNorm with
/// ModelOptions::gn_groups groups (Wu & He 2018). ln: LayerNorm as Wu & He define it for conv
/// nets, i.e. GroupNorm with one group (statistics over C, H, W of each image, a gamma and beta
/// per channel), not layers/layer_norm.hpp's elementwise affine over [C, H, W]. none: no
/// normalization (an Identity). Every other model takes bn only (require_batch_norm).
enum class NormKind { kBatch, kGroup, kLayer, kNone };
const EnumTable<NormKind>& enum_table(NormKind);

struct ModelOptions {
  uint64_t seed = 0;  ///< seeds every weight init
  int64_t num_classes = 10;
  BnInit bn_init = BnInit::kFixed;   ///< normalization layers' gamma init
  NormKind norm = NormKind::kBatch;  ///< the ResNets' normalization layer
  /// GroupNorm's groups with norm gn: each layer of C channels takes min(gn_groups, C) groups,
  /// which must divide C (Wu & He's default G = 32).
  int64_t gn_groups = 32;
};

/// Builds the model `name` if it handles it, else returns nullptr.
using ModelBuilder =
    std::function<std::shared_ptr<Module>(const std::string& name, const ModelOptions&)>;

/// Adds a builder; `pattern` describes the names it takes (for help and errors). Returns true.
bool register_model(const std::string& pattern, ModelBuilder builder);
/// The largest model minidl builds: 2^28 = 268,435,456 parameters (1 GiB of float32 weights;
/// training holds about four times that in weights, gradients and optimizer buffers). A builder
/// whose size follows from the name (resnet<D>[_<W>]) checks it before allocating anything, so
/// a name from a checkpoint's metadata cannot make minidl allocate for seconds and fail.
constexpr int64_t kMaxModelParameters = int64_t{1} << 28;
/// Throws std::invalid_argument "model \"NAME\" would have N parameters, more than the M
/// minidl builds" when `parameters` > kMaxModelParameters.
void check_model_size(const std::string& name, int64_t parameters);

/// Builds a model by name. Throws std::invalid_argument listing the known patterns, and
/// check_model_size's error for a model too large.
std::shared_ptr<Module> create_model(const std::string& name, const ModelOptions& options = {});
/// The registered name patterns, e.g. "resnet<D>[_<W>]".
std::vector<std::string> model_patterns();

/// Applies options.bn_init to every BatchNorm, GroupNorm and LayerNorm in `model`, in module
/// order (uniform draws from `gen`); beta set to 0.
void init_batch_norms(Module& model, const ModelOptions& options, Generator& gen);

/// For the builders of models whose normalization is BatchNorm only: throws
/// std::invalid_argument "norm gn is not available for model cnn (...)" unless options.norm is
/// NormKind::kBatch.
void require_batch_norm(const ModelOptions& options, const std::string& model);

}  // namespace minidl

#define MINIDL_REGISTER_MODEL(id, pattern, builder) \
  static const bool minidl_model_registered_##id = ::minidl::register_model(pattern, builder)
