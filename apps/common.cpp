#include "apps/common.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "layers/batch_norm.hpp"
#include "layers/models/registry.hpp"

namespace minidl::app {

std::string resolve_data_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("MINIDL_DATA"); env && *env) return env;
  throw std::invalid_argument("--data: no CIFAR-10 directory given; pass --data DIR or set "
                              "MINIDL_DATA (get the data with scripts/get_cifar10.sh)");
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write \"" + tmp + "\"");
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("write failed for \"" + tmp + "\"");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename \"" + tmp + "\" to \"" + path + "\"");
  }
}

int64_t count_parameters(const Module& model) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters()) n += p.numel();
  return n;
}

void set_batch_norm_training(Module& model, bool training) {
  for (auto& [name, m] : model.named_modules()) {
    if (auto* bn = dynamic_cast<BatchNorm*>(m)) bn->train(training);
  }
}

std::shared_ptr<Module> load_model(const std::string& path, Checkpoint* out) {
  Checkpoint ck = load_safetensors(path);
  auto it = ck.metadata.find("model");
  if (it == ck.metadata.end()) {
    throw std::runtime_error("checkpoint \"" + path + "\" has no \"model\" entry in its "
                             "__metadata__ (was it written by minidl train?)");
  }
  std::shared_ptr<Module> model = create_model(it->second, ModelOptions{});
  try {
    model->load_state_dict(ck.tensors);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint \"" + path + "\" does not fit model " + it->second +
                             ": " + e.what());
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

}  // namespace minidl::app
