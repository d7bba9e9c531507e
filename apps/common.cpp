#include "apps/common.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/file_io.hpp"
#include "layers/batch_norm.hpp"
#include "layers/models/registry.hpp"

namespace minidl::app {

std::string resolve_data_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("MINIDL_DATA"); env && *env) return env;
  throw std::invalid_argument(
      "--data: no CIFAR-10 directory given; pass --data DIR or set "
      "MINIDL_DATA (get the data with scripts/get_cifar10.sh)");
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text);
}

int64_t count_parameters(const Module& model) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters()) n += p.numel();
  return n;
}

std::vector<optim::UpdateMask> apply_train_only_flag(Module& model, const std::string& mode,
                                                     uint64_t seed) {
  try {
    return optim::apply_train_only(model, mode, seed);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--train-only: ") + e.what());
  }
}

void set_batch_norm_training(Module& model, bool training) {
  for (BatchNorm* bn : model.modules_of<BatchNorm>()) bn->train(training);
}

std::shared_ptr<Module> load_model(const std::string& path, Checkpoint* out, bool allow_nonfinite) {
  Checkpoint ck = load_safetensors(path);
  if (!allow_nonfinite) {
    for (const auto& [name, t] : ck.tensors) {
      int64_t bad = 0, first = -1;
      const float* v = t.data();
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (!std::isfinite(v[i])) {
          if (bad++ == 0) first = i;
        }
      }
      if (bad > 0) {
        throw std::runtime_error("checkpoint \"" + path + "\": tensor \"" + name + "\" has " +
                                 std::to_string(bad) + " NaN or infinite value(s) of " +
                                 std::to_string(t.numel()) + " (first at index " +
                                 std::to_string(first) +
                                 "); the run that wrote it diverged. "
                                 "Pass --allow-nonfinite to evaluate it anyway");
      }
    }
  }
  auto it = ck.metadata.find("model");
  if (it == ck.metadata.end()) {
    throw std::runtime_error("checkpoint \"" + path +
                             "\" has no \"model\" entry in its "
                             "__metadata__ (was it written by minidl train?)");
  }
  std::shared_ptr<Module> model = create_model(it->second, ModelOptions{});
  try {
    model->load_state_dict(ck.tensors);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint \"" + path + "\" does not fit model " + it->second + ": " +
                             e.what());
  }
  model->eval();
  if (out) *out = std::move(ck);
  return model;
}

data::Normalization checkpoint_normalization(const Checkpoint& ck, const std::string& path) {
  auto it = ck.metadata.find("normalization");
  if (it == ck.metadata.end()) return data::Normalization{};
  try {
    return data::normalization_named(it->second, "checkpoint \"" + path + "\"");
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
}

bool run_plot_script(const std::string& script_name, const std::string& dir, bool quiet) {
  namespace fs = std::filesystem;
  char exe[4096] = {0};
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  fs::path script = fs::path(len > 0 ? std::string(exe, len) : "").parent_path().parent_path() /
                    "scripts" / script_name;
  if (const char* s = std::getenv("MINIDL_SCRIPTS")) script = fs::path(s) / script_name;
  const std::string cmd = "/usr/bin/python3 " + script.string() + " " + dir;
  if (fs::exists(script) && std::system((cmd + " > /dev/null 2>&1").c_str()) == 0) return true;
  if (!quiet) {
    std::printf(
        "plots not made (needs /usr/bin/python3 with matplotlib: "
        "scripts/install_deps.sh --with-python); run: %s\n",
        cmd.c_str());
  }
  return false;
}

std::string format_duration(double seconds) {
  char buf[32];
  const int t = static_cast<int>(seconds + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  return buf;
}

}  // namespace minidl::app
