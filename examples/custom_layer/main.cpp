// custom_layer: GroupNorm defined outside minidl (group_norm.hpp), checked against finite
// differences, then a small GroupNorm CNN, registered as a model by name, trained for one epoch
// on CIFAR-10 by minidl's Trainer (train/trainer.hpp). Usage: custom_layer --data DIR
// [--limit N] (N training images, default all 50,000). Exit status 1 when the gradient check
// fails or on an error.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "core/autograd.hpp"
#include "core/kernels.hpp"
#include "group_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/models/registry.hpp"
#include "layers/sequential.hpp"
#include "layers/simple.hpp"
#include "train/trainer.hpp"

using namespace minidl;

/// Largest relative error between backward's gradient of L = sum(y * r) and central
/// differences, over x, weight and bias of a GroupNorm(2, 4) on a [2, 4, 3, 3] input.
static double gradient_check() {
  Generator gen(7);
  custom::GroupNorm gn(2, 4);
  for (float& v : gn.weight.mutable_vec()) v = 0.5f + gen.uniform();
  for (float& v : gn.bias.mutable_vec()) v = gen.normal();
  Tensor x({2, 4, 3, 3}, true);
  for (float& v : x.mutable_vec()) v = gen.normal();
  Tensor r({2, 4, 3, 3});
  for (float& v : r.mutable_vec()) v = gen.normal();
  gn(x).backward(r);
  auto loss = [&] {
    NoGradGuard no_grad;
    Tensor y = gn(x);
    double s = 0.0;
    for (int64_t i = 0; i < y.numel(); ++i) s += static_cast<double>(y.data()[i]) * r.data()[i];
    return s;
  };
  double worst = 0.0;
  for (Tensor* t : {&x, &gn.weight, &gn.bias}) {
    const Tensor analytic = t->grad();
    for (int64_t i = 0; i < t->numel(); ++i) {
      const float h = 1e-2f, v = t->data()[i];
      t->mutable_data()[i] = v + h;
      const double up = loss();
      t->mutable_data()[i] = v - h;
      const double down = loss();
      t->mutable_data()[i] = v;
      const double numeric = (up - down) / (2.0 * h), a = analytic.data()[i];
      worst = std::max(worst, std::fabs(numeric - a) / std::max(1e-2, std::fabs(numeric)));
    }
  }
  return worst;
}

/// conv - GroupNorm - ReLU - max-pool twice, then conv - GroupNorm - ReLU, global average
/// pool and a linear head: [N, 3, 32, 32] -> logits [N, 10].
class GroupNormNet : public Module {
 public:
  explicit GroupNormNet(Generator& gen) {
    features = register_module("features", std::make_shared<Sequential>());
    int64_t in = 3;
    for (int64_t out : {16, 32, 64}) {
      features->add(
          std::make_shared<Conv2d>(Conv2dOptions(in, out, 3).padding(1).bias(false), gen));
      features->add(std::make_shared<custom::GroupNorm>(out / 8 > 0 ? out / 8 : 1, out));
      features->add(std::make_shared<ReLU>());
      if (out != 64) features->add(std::make_shared<MaxPool2d>(2));
      in = out;
    }
    features->add(std::make_shared<GlobalAvgPool2d>());
    fc = register_module("fc", std::make_shared<Linear>(LinearOptions(in, 10), gen));
  }
  Tensor forward(const Tensor& x) override { return (*fc)((*features)(x)); }
  std::string type_name() const override { return "GroupNormNet"; }
  std::shared_ptr<Sequential> features;
  std::shared_ptr<Linear> fc;
};

// One line makes the model buildable by name, by the Trainer as by `minidl train --model`.
MINIDL_REGISTER_MODEL(group_norm_net, "groupnormnet",
                      [](const std::string& name,
                         const ModelOptions& o) -> std::shared_ptr<Module> {
                        if (name != "groupnormnet") return nullptr;
                        Generator gen(o.seed);
                        return std::make_shared<GroupNormNet>(gen);
                      });

int main(int argc, char** argv) {
  std::string data_dir;
  int64_t limit = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--data"))
      data_dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--limit"))
      limit = std::atoll(argv[i + 1]);
  }
  if (data_dir.empty()) {
    std::fprintf(stderr, "usage: custom_layer --data CIFAR10_DIR [--limit N]\n");
    return 1;
  }
  try {
    const double worst = gradient_check();
    std::printf("GroupNorm gradient check: largest relative error %.2e\n", worst);
    if (!(worst < 1e-2)) {
      std::fprintf(stderr, "gradient check failed\n");
      return 1;
    }
    // One epoch of SGD (momentum 0.9, constant lr 0.05) with crop + flip, evaluated on the first
    // 2,000 test images; out empty: no run directory is written.
    train::TrainOptions o;
    o.data = data_dir;
    o.model = "groupnormnet";
    o.epochs = 1;
    o.lr = 0.05f;
    o.nesterov = false;
    o.schedule = optim::ScheduleKind::kConstant;
    o.warmup_epochs = 0;
    o.label_smoothing = 0.0f;
    o.limit_train = limit;
    o.limit_test = 2000;
    o.eval_batch_size = 500;
    o.out.clear();
    train::Callbacks cb;
    cb.on_epoch_end = [](const train::EpochEnd& e) {
      std::printf("epoch %lld: train loss %.4f, test accuracy %.2f%% (%lld test images), %.1f s\n",
                  static_cast<long long>(e.row.epoch), e.row.train_loss, 100.0 * e.test->accuracy(),
                  static_cast<long long>(e.test->count), e.train.seconds);
    };
    const train::RunResult r = train::Trainer(o, cb).fit();
    std::printf("GroupNormNet, %lld epoch: test accuracy %.2f%%\n",
                static_cast<long long>(r.epochs_done), 100.0 * r.test_accuracy);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_layer: error: %s\n", e.what());
    return 1;
  }
}
