// minidl — helpers shared by the subcommands.
#pragma once

#include <memory>
#include <string>

#include "core/profiler.hpp"
#include "core/safetensors.hpp"
#include "data/loader.hpp"
#include "layers/module.hpp"
#include "optim/freeze.hpp"

namespace minidl::app {

/// The CIFAR-10 directory: `flag` if given, else $MINIDL_DATA. Throws std::invalid_argument
/// naming both when neither is set.
std::string resolve_data_dir(const std::string& flag);

/// A duration in seconds as "1h05m" (an hour or more) or "4m07s" (rounded to the second).
std::string format_duration(double seconds);

/// Writes `text` to "<path>.tmp", fsyncs it and renames it over `path` (core/file_io.hpp).
/// Throws std::runtime_error naming the file.
void write_text_atomic(const std::string& path, const std::string& text);

int64_t count_parameters(const Module& model);

/// optim::apply_train_only, its errors prefixed with the flag ("--train-only: ...").
std::vector<optim::UpdateMask> apply_train_only_flag(Module& model, const std::string& mode,
                                                     uint64_t seed);

/// Sets the mode of every BatchNorm in `model` (train: batch statistics; eval: running), leaving
/// other layers as they are.
void set_batch_norm_training(Module& model, bool training);

/// `--profile`'s window: when `on`, clears the profiler and enables it; stop() or the
/// destructor (also when an exception leaves the scope) disables it again, keeping the rows for
/// profiler::table(). Does nothing when `on` is false.
class ProfileWindow {
 public:
  explicit ProfileWindow(bool on) : on_(on) {
    if (on_) {
      profiler::reset();
      profiler::set_enabled(true);
    }
  }
  ~ProfileWindow() { stop(); }
  ProfileWindow(const ProfileWindow&) = delete;
  ProfileWindow& operator=(const ProfileWindow&) = delete;
  void stop() {
    if (on_) profiler::set_enabled(false);
    on_ = false;
  }

 private:
  bool on_;
};

/// Builds the model named in a checkpoint's metadata ("model") and loads its tensors.
/// Throws std::runtime_error naming the file when the metadata has no model name, and the
/// load_state_dict error (naming the tensor) when a name or shape does not fit. Unless
/// `allow_nonfinite`, a tensor holding NaN or infinity is refused too, naming the tensor, the
/// count and the first index (eval's --allow-nonfinite sets it).
std::shared_ptr<Module> load_model(const std::string& checkpoint_path, Checkpoint* out = nullptr,
                                   bool allow_nonfinite = false);

/// The input normalization a checkpoint was trained with: its metadata entry "normalization"
/// (cifar10 | imagenet, data::normalization_named); cifar10 when the entry is absent (minidl
/// before the entry existed). Throws std::runtime_error naming `path` for an unknown name.
data::Normalization checkpoint_normalization(const Checkpoint& ck, const std::string& path);

/// Runs /usr/bin/python3 scripts/<script_name> <dir> (the scripts folder next to the build
/// folder, or $MINIDL_SCRIPTS). Returns whether it succeeded; unless `quiet`, prints how to run
/// it by hand if not (matplotlib missing: scripts/install_deps.sh --with-python).
bool run_plot_script(const std::string& script_name, const std::string& dir, bool quiet);

}  // namespace minidl::app
