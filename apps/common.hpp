// minidl — helpers shared by the subcommands.
#pragma once

#include <memory>
#include <string>

#include "core/safetensors.hpp"
#include "layers/module.hpp"

namespace minidl::app {

/// The CIFAR-10 directory: `flag` if given, else $MINIDL_DATA. Throws std::invalid_argument
/// naming both when neither is set.
std::string resolve_data_dir(const std::string& flag);

/// Writes `text` to "<path>.tmp" and renames it over `path`. Throws std::runtime_error.
void write_text_atomic(const std::string& path, const std::string& text);

int64_t count_parameters(const Module& model);

/// Sets the mode of every BatchNorm in `model` (train: batch statistics; eval: running), leaving
/// other layers as they are.
void set_batch_norm_training(Module& model, bool training);

/// Builds the model named in a checkpoint's metadata ("model") and loads its tensors.
/// Throws std::runtime_error naming the file when the metadata has no model name, and the
/// load_state_dict error (naming the tensor) when a name or shape does not fit.
std::shared_ptr<Module> load_model(const std::string& checkpoint_path, Checkpoint* out = nullptr);

}  // namespace minidl::app
