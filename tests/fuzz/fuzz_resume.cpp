// libFuzzer harness: continuing a run as `minidl train --resume RUN` does, from a config.json
// and a train_state.safetensors given together. The input is a 2-byte little-endian length N,
// N bytes of config.json, and the rest: train_state.safetensors; both are written into a scratch
// run folder, then read_config, validate, the model and optimizer the config names, and
// load_train_state with the batches per epoch its limit_train and batch_size give. Any
// std::exception is a valid outcome; a crash, a sanitizer report, a leak, a hang, or a loaded
// state outside its contract (epoch outside 1..epochs, step not epoch x batches per epoch,
// metrics that do not parse) is a finding. Only small models are built (the fuzzer must not
// spend its time in weight init): a config naming another model is read and validated, then
// stops.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>

#include "tests/fuzz/fuzz_input.hpp"
#include "train/run_dir.hpp"
#include "train/trainer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minidl;
  static fuzz::ScratchDir run("resume");
  const std::string& dir = run.path();
  if (size < 2) return 0;
  const size_t n = std::min<size_t>(size - 2, data[0] | static_cast<size_t>(data[1]) << 8);
  fuzz::write_file(dir + "/config.json", data + 2, n);
  fuzz::write_file(dir + "/train_state.safetensors", data + 2 + n, size - 2 - n);
  train::TrainOptions o;
  try {
    o = train::read_config(dir + "/config.json");
    o.out = dir;
    train::validate(o);
  } catch (const std::exception&) {
    return 0;
  }
  if (o.model != "resnet8_1" && o.model != "resnet8_2" && o.model != "resnet14_1") return 0;
  try {
    std::shared_ptr<Module> model = create_model(o.model, train::model_options(o));
    std::unique_ptr<optim::Optimizer> opt = train::make_optimizer(o, *model);
    const int64_t images = o.limit_train > 0 ? o.limit_train : 50000;
    const int64_t per_epoch = images > o.batch_size ? images / o.batch_size : 1;
    const train::ResumePoint r = train::load_train_state(dir, *model, *opt, o, per_epoch);
    if (r.epoch < 1 || r.epoch > static_cast<int64_t>(o.epochs))
      fuzz::contract_broken("a loaded state's epoch is outside 1..epochs");
    if (r.step != r.epoch * per_epoch)
      fuzz::contract_broken("a loaded state's step is not epoch x batches per epoch");
    train::parse_metrics(r.metrics, dir + "/metrics.csv");
  } catch (const std::exception&) {
  }
  return 0;
}
