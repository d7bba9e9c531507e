// Tests of the "why BatchNorm works" probes (apps/probes.hpp, apps/why_bn.hpp) and of
// ActivationNoise (layers/activation_noise.hpp).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "experiments/probes.hpp"
#include "experiments/probed_run.hpp"
#include "core/autograd.hpp"
#include "core/ops.hpp"
#include "data/cifar10.hpp"
#include "data/loader.hpp"
#include "gradcheck.hpp"
#include "layers/activation_noise.hpp"
#include "layers/models/registry.hpp"
#include "test_util.hpp"

using namespace minidl;
using namespace minidl::experiments;

namespace {

/// Every value of every tensor of `m` (parameters and buffers), in state_dict order.
std::vector<float> all_state(const Module& m) {
  std::vector<float> v;
  for (const auto& [name, t] : m.state_dict()) v.insert(v.end(), t.data(), t.data() + t.numel());
  return v;
}

std::vector<float> optimizer_state(optim::Optimizer& opt) {
  std::vector<float> v;
  for (const auto& b : opt.state_buffers()) v.insert(v.end(), b.values->begin(), b.values->end());
  return v;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// A module holding one parameter vector w [D], for losses written by hand.
struct Vector : Module {
  explicit Vector(std::vector<float> w0) {
    w = register_parameter("w", Tensor({static_cast<int64_t>(w0.size())}, w0));
  }
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Vector"; }
  Tensor w;
};

/// L(w) = 0.5 * sum_i a_i w_i^2 as one recorded op; dL/dw_i = a_i w_i.
Tensor quadratic(const Tensor& w, const std::vector<float>& a) {
  double s = 0.0;
  for (int64_t i = 0; i < w.numel(); ++i) s += 0.5 * a[i] * w.data()[i] * w.data()[i];
  Tensor out = Tensor::scalar(static_cast<float>(s));
  if (!needs_graph({&w})) return out;
  TensorImpl* o = out.impl();
  attach_node(
      out, {w},
      [w, o, a]() mutable {
        const float dy = o->grad[0];
        for (int64_t i = 0; i < w.numel(); ++i) w.grad_data()[i] += dy * a[i] * w.data()[i];
      },
      "quadratic");
  return out;
}

}  // namespace

TEST_CASE("landscape probe on a quadratic equals the hand-computed values", "[why_bn]") {
  // L(w) = 0.5 sum a_i w_i^2, g = a * w. At w - eta g: w_i (1 - eta a_i), so
  //   L = 0.5 sum a_i w_i^2 (1 - eta a_i)^2,  grad = a_i w_i (1 - eta a_i),
  //   ||grad - g|| = eta ||a^2 w||,  beta = max_eta eta ||a^2 w|| / (eta ||a w||) = ||a^2 w|| / ||a
  //   w||.
  const std::vector<float> a = {1.0f, 2.0f, 4.0f}, w0 = {1.0f, -0.5f, 0.25f};
  Vector m(w0);
  Tensor l = quadratic(m.w, a);
  l.backward();
  const std::vector<double> etas = {0.1, 0.25, 0.5};
  const LandscapeProbe p = probe_landscape(
      m, l.item(), [&] { return quadratic(m.w, a); }, etas);
  double aw = 0, a2w = 0;
  for (int i = 0; i < 3; ++i) {
    aw += a[i] * w0[i] * a[i] * w0[i];
    a2w += a[i] * a[i] * w0[i] * a[i] * a[i] * w0[i];
  }
  CHECK(p.grad_norm == Approx(std::sqrt(aw)).epsilon(1e-6));  // sqrt(1 + 1 + 1) = 1.732
  REQUIRE(p.points.size() == 3);
  for (size_t k = 0; k < etas.size(); ++k) {
    double loss = 0.0;
    for (int i = 0; i < 3; ++i) {
      const double f = 1.0 - etas[k] * a[i];
      loss += 0.5 * a[i] * w0[i] * w0[i] * f * f;
    }
    CHECK(p.points[k].eta == etas[k]);
    CHECK(p.points[k].loss == Approx(loss).epsilon(1e-5));
    CHECK(p.points[k].grad_distance == Approx(etas[k] * std::sqrt(a2w)).epsilon(1e-5));
  }
  CHECK(p.beta_smoothness == Approx(std::sqrt(a2w / aw)).epsilon(1e-5));  // sqrt(21 / 3) = 2.646
  // Restored: the weights and the gradient are those from before the probe.
  CHECK(m.w.data()[0] == 1.0f);
  CHECK(m.w.data()[1] == -0.5f);
  CHECK(m.w.data()[2] == 0.25f);
  CHECK(m.w.grad().data()[2] == 1.0f);  // a_2 w_2 = 4 * 0.25
}

TEST_CASE("a probed run is bit-identical to one without probes", "[why_bn]") {
  const data::Dataset train = data::load_cifar10(minidl::testing::data_dir(), true, 256);
  ProbedRunConfig c;
  c.model = "vgg11_bn_w16";
  c.epochs = 2;
  c.batch_size = 64;
  c.lr = 0.05f;
  c.momentum = 0.9f;  // so that the optimizer has state to compare
  c.weight_decay = 5e-4f;
  ProbedRun plain = train_probed(c, train, nullptr);
  c.probe_every = 1;  // every step: landscape, covariate shift and activations
  c.etas = {0.025, 0.1, 0.2};
  c.covariate_shift = true;
  c.activation_index = 6;  // the ReLU of block 2 in vgg11_bn: features.4 conv, .5 BN, .6 ReLU
  ProbedRun probed = train_probed(c, train, nullptr);
  REQUIRE(probed.landscape.size() == 8);  // 2 epochs x 4 steps
  REQUIRE(probed.shift.size() == 8);
  REQUIRE(probed.activations.size() == 8);
  CHECK(bit_equal(all_state(*plain.model), all_state(*probed.model)));
  CHECK(bit_equal(optimizer_state(*plain.opt), optimizer_state(*probed.opt)));
  int64_t params = 0;
  for (const Tensor& t : plain.model->parameters()) params += t.numel();
  CHECK(static_cast<int64_t>(optimizer_state(*plain.opt).size()) == params);  // a momentum each
  CHECK(plain.labels_seen == probed.labels_seen);
  CHECK(plain.labels_seen.size() == 512);
}

TEST_CASE("covariate shift of the first layer is exactly 0, of later layers not", "[why_bn]") {
  const data::Dataset train = data::load_cifar10(minidl::testing::data_dir(), true, 128);
  for (const char* model : {"vgg11_w16", "vgg11_bn_w16", "vgg11_noisybn_w16"}) {
    ProbedRunConfig c;
    c.model = model;
    c.epochs = 1;
    c.batch_size = 64;
    c.lr = 0.1f;
    c.probe_every = 1;
    c.covariate_shift = true;
    ProbedRun r = train_probed(c, train, nullptr);
    REQUIRE(r.shift.size() == 2);
    for (const auto& [step, layers] : r.shift) {
      REQUIRE(layers.size() == 9);  // 8 convs and the classifier
      INFO(model << " step " << step);
      CHECK(layers[0].name == "features.0.weight");
      CHECK(layers[0].distance == 0.0);
      CHECK(layers[0].cosine == Approx(1.0).margin(1e-12));
      CHECK(layers[0].grad_norm > 0.0);
      CHECK(layers[8].name == "classifier.weight");
      CHECK(layers[8].distance > 0.0);
    }
  }
}

TEST_CASE("ActivationNoise: gradient, eval identity, hold and its distributions", "[why_bn]") {
  Generator gen(3);
  ActivationNoise noise(4, 42);
  noise.train();
  Tensor x0 = minidl::testing::randn({2, 4, 3, 3}, gen, 1.0f, 0.0f, true);
  noise(x0);  // draw once; with hold the op is y = scale[c] * x + fixed noise
  noise.hold = true;
  minidl::testing::gradcheck([&](const std::vector<Tensor>& in) { return noise(in[0]); }, {x0});
  // hold: the same output twice; and y - scale * x is the held noise.
  Tensor y1 = noise(x0), y2 = noise(x0);
  CHECK(std::memcmp(y1.data(), y2.data(), sizeof(float) * y1.numel()) == 0);
  const int64_t HW = 9;
  for (int64_t i = 0; i < y1.numel(); ++i) {
    const int64_t c = (i / HW) % 4;
    REQUIRE(y1.data()[i] == Approx(noise.scale()[c] * x0.data()[i] + noise.noise().data()[i]));
  }
  // Without hold every forward draws anew.
  noise.hold = false;
  Tensor y3 = noise(x0);
  CHECK(std::memcmp(y1.data(), y3.data(), sizeof(float) * y1.numel()) != 0);
  // Eval: the identity (the same tensor).
  noise.eval();
  CHECK(noise(x0).same(x0));
  // The distributions: scale in [0.5, 1.5); per channel, noise mean within 0.5 + 3 sigma/sqrt(n)
  // of [-0.5, 0.5] and std in [0.25, 0.75] (loosely, from 20,000 draws per channel).
  noise.train();
  Tensor big({10000, 4, 1, 2});
  noise(big);
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(noise.scale()[c] >= 0.5f);
    CHECK(noise.scale()[c] < 1.5f);
    double s = 0, s2 = 0;
    for (int64_t n = 0; n < 10000; ++n)
      for (int64_t i = 0; i < 2; ++i) {
        const double v = noise.noise().data()[(n * 4 + c) * 2 + i];
        s += v, s2 += v * v;
      }
    const double mean = s / 20000, sd = std::sqrt(s2 / 20000 - mean * mean);
    CHECK(std::fabs(mean) <= 0.5 + 0.02);
    CHECK(sd >= 0.25 - 0.02);
    CHECK(sd <= 0.75 + 0.02);
  }
  CHECK_THROWS_WITH(noise(Tensor({2, 3, 2, 2})),
                    Catch::Contains("ActivationNoise: expected [N, 4, H, W]"));
}

TEST_CASE("vgg11_noisybn has vgg11_bn's tensors and an ActivationNoise after every BN",
          "[why_bn]") {
  auto bn = create_model("vgg11_bn_w4"), noisy = create_model("vgg11_noisybn_w4");
  std::vector<std::string> bn_shapes, noisy_shapes;
  for (const auto& [name, t] : bn->state_dict()) bn_shapes.push_back(shape_str(t.shape()));
  for (const auto& [name, t] : noisy->state_dict()) noisy_shapes.push_back(shape_str(t.shape()));
  CHECK(bn_shapes == noisy_shapes);
  int noises = 0;
  for (auto& [name, m] : noisy->named_modules())
    noises += dynamic_cast<ActivationNoise*>(m) != nullptr;
  CHECK(noises == 8);
  // Same seed: the same conv weights (the noise draws from its own stream).
  CHECK(bit_equal(all_state(*bn), all_state(*noisy)));
  CHECK(noisy->named_parameters()[1].first == "features.1.weight");
  CHECK(noisy->named_parameters()[3].first == "features.5.weight");  // .2 noise, .3 ReLU, .4 pool
}

TEST_CASE("experiment landscape and covariate-shift from the command line", "[why_bn][cli]") {
  using minidl::testing::run_cli;
  const std::string data = " --data " + minidl::testing::data_dir();
  const std::string out = minidl::testing::fresh_dir("why_bn");
  const std::string small = data +
                            " --model vgg11_w16 --epochs 1 --limit-train 256 --limit-test "
                            "200 --batch-size 64 --probes 2 --threads 1";
  SECTION("landscape writes its tables, one probe row per step size") {
    auto [status, text] = run_cli("experiment landscape" + small +
                                  " --lr 0.05 0.1 --etas 1 2 "
                                  "--out " +
                                  out + "/land");
    INFO(text);
    REQUIRE(status == 0);
    CHECK_THAT(text, Catch::Contains("| standard | vgg11_w16 | 0.05 |") &&
                         Catch::Contains("| bn | vgg11_bn_w16 | 0.1 |"));
    std::ifstream f(out + "/land/landscape.csv");
    std::string line;
    int rows = 0;
    std::getline(f, line);
    CHECK(line == "variant,model,lr,step,epoch,eta,loss,grad_distance");
    while (std::getline(f, line)) ++rows;
    CHECK(rows == 2 * 2 * 2 * 2);  // 2 lrs x 2 variants x 2 probes x 2 step sizes
    CHECK(std::filesystem::exists(out + "/land/smoothness.csv"));
    CHECK(std::filesystem::exists(out + "/land/results.md"));
  }
  SECTION("covariate-shift writes one row per probe and layer") {
    auto [status, text] = run_cli("experiment covariate-shift" + small +
                                  " --variants bn "
                                  "noisy-bn --layer 2 --out " +
                                  out + "/cs");
    INFO(text);
    REQUIRE(status == 0);
    std::ifstream f(out + "/cs/covariate_shift.csv");
    std::string line;
    int rows = 0, first_layer_zero = 0;
    std::getline(f, line);
    while (std::getline(f, line)) {
      ++rows;
      first_layer_zero += line.find(",1,features.0.weight,") != std::string::npos &&
                          line.find(",0,1") != std::string::npos;  // distance 0, cosine 1
    }
    CHECK(rows == 2 * 2 * 9);  // 2 variants x 2 probes x 9 weights
    CHECK(first_layer_zero == 4);
    CHECK(std::filesystem::exists(out + "/cs/activations.csv"));
  }
  SECTION("bad flags name the flag") {
    const std::pair<const char*, const char*> cases[] = {
        {"bn-only --lr 0.1", "--lr is for landscape and covariate-shift"},
        {"landscape --variants noisy-bn", "--variants: \"noisy-bn\" is not one of standard, bn"},
        {"landscape --model resnet20", "--model must be a VGG without BN"},
        {"covariate-shift --layer 9", "--layer must be from 1 to 8"},
        {"landscape --lr nan", "--lr"},
        {"landscape --resume",
         "--resume is for bn-only, bn-only-sweep and batch-size, not "
         "landscape"},
        {"landscape --layer 2", "--layer is for covariate-shift, not landscape"},
        {"bn-only-sweep --model resnet8",
         "--model is for bn-only, landscape, covariate-shift and batch-size, not bn-only-sweep "
         "(did you mean --models?)"},
        {"bn-only --variants standard",
         "--variants: a variant must be all, bn, fc, bn+fc or random-per-channel, got "
         "\"standard\""}};
    for (const auto& [args, message] : cases) {
      const std::string a = args;  // "<experiment> <flags>"
      auto [code, text] =
          run_cli("experiment " + a.substr(0, a.find(' ')) + data + a.substr(a.find(' ')));
      INFO(args);
      CHECK(code == 1);
      CHECK_THAT(text, Catch::Contains(message));
    }
  }
  std::filesystem::remove_all(out);
}
