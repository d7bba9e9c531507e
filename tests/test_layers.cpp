// Module API, BatchNorm semantics, the model zoo's names and shapes, checkpoints.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/autograd.hpp"
#include "train/run_dir.hpp"
#include "core/ops.hpp"
#include "core/safetensors.hpp"
#include "distribution.hpp"
#include "gradcheck.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/sequential.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/resnet.hpp"

using namespace minidl;
using minidl::testing::randn;

static std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("minidl_test_" + name)).string();
}

TEST_CASE("dirac_ on the first filters leaves the others alone", "[layers]") {
  // torch.nn.init.dirac_(w[:2]) on w [4, 2, 3, 3] full of 7: filters 0 and 1 become identity
  // kernels, filters 2 and 3 keep their 7s.
  Tensor w = Tensor::full({4, 2, 3, 3}, 7.0f);
  dirac_(w, 2);
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t i = 0; i < 18; ++i) {
      const float want = o >= 2 ? 7.0f : (i == o * 9 + 4 ? 1.0f : 0.0f);
      REQUIRE(w.data()[o * 18 + i] == want);
    }
  CHECK_THROWS_WITH(dirac_(w, 3), Catch::Contains("0 <= filters <= min(out, in)"));
}

TEST_CASE("dirac_ makes a conv the identity on its first min(out, in) channels", "[layers]") {
  // torch.nn.init.dirac_ on [3, 2, 3, 3]: w[0, 0, 1, 1] = w[1, 1, 1, 1] = 1, all else 0.
  Tensor w = Tensor::full({3, 2, 3, 3}, 7.0f);
  dirac_(w);
  double sum = 0;
  for (float v : w.vec()) sum += v;
  CHECK(sum == 2.0);
  CHECK(w.data()[((0 * 2 + 0) * 3 + 1) * 3 + 1] == 1.0f);
  CHECK(w.data()[((1 * 2 + 1) * 3 + 1) * 3 + 1] == 1.0f);
  // As a conv with padding 1: output channels 0 and 1 copy input channels 0 and 1, channel 2 is 0.
  Generator g(8);
  Tensor x = minidl::testing::randn({2, 2, 5, 5}, g);
  Tensor y = ops::conv2d(x, w, Tensor(), 1, 1);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t i = 0; i < 25; ++i) {
      REQUIRE(y.data()[(n * 3 + 0) * 25 + i] == x.data()[(n * 2 + 0) * 25 + i]);
      REQUIRE(y.data()[(n * 3 + 1) * 25 + i] == x.data()[(n * 2 + 1) * 25 + i]);
      REQUIRE(y.data()[(n * 3 + 2) * 25 + i] == 0.0f);
    }
  Tensor bad({3, 3});
  CHECK_THROWS_WITH(dirac_(bad), Catch::Contains("dirac_: expected a conv weight"));
}

TEST_CASE("resnet20 state_dict has open_lth's names, shapes and parameter count", "[layers]") {
  auto model = create_model("resnet20", {});
  NamedTensors sd = model->state_dict();
  // 1 stem conv + 3 x 3 blocks x 2 convs + 2 shortcut convs = 21 conv weights; 21 BNs x 4; fc 2.
  CHECK(sd.size() == 21 + 21 * 4 + 2);
  CHECK(sd.front().first == "conv.weight");
  CHECK(sd.front().second.shape() == Shape{16, 3, 3, 3});
  CHECK(sd[1].first == "bn.weight");
  CHECK(sd[3].first == "bn.running_mean");
  CHECK(sd[4].first == "bn.running_var");
  CHECK(sd[5].first == "blocks.0.conv1.weight");
  auto find = [&](const std::string& n) -> Tensor {
    for (auto& [k, t] : sd)
      if (k == n) return t;
    FAIL("missing " << n);
    return Tensor();
  };
  CHECK(find("blocks.3.conv1.weight").shape() == Shape{32, 16, 3, 3});
  CHECK(find("blocks.3.shortcut.0.weight").shape() == Shape{32, 16, 1, 1});
  CHECK(find("blocks.3.shortcut.1.running_var").shape() == Shape{32});
  CHECK(find("blocks.6.shortcut.0.weight").shape() == Shape{64, 32, 1, 1});
  CHECK(find("blocks.8.bn2.bias").shape() == Shape{64});
  CHECK(find("fc.weight").shape() == Shape{10, 64});
  CHECK(find("fc.bias").shape() == Shape{10});
  int64_t params = 0;
  for (const Tensor& p : model->parameters()) params += p.numel();
  // 272,474: sum(p.numel()) of the same architecture written in torch.nn (open_lth's
  // cifar_resnet_20: 3x3 stem, 9 basic blocks, 1x1 conv + BN shortcuts at the two
  // downsamplings, Linear(64 -> 10)), checked with Debian's python3-torch.
  CHECK(params == 272474);
  // Wider variant: resnet14_64 has stages of 64, 128, 256 channels (two blocks each, 14 =
  // 6 * 2 + 2): every conv weight, in order, and the classifier.
  auto wide = create_model("resnet14_64", {});
  std::vector<std::pair<std::string, Shape>> convs;
  for (auto& [k, t] : wide->state_dict())
    if (t.dim() == 4) convs.emplace_back(k, t.shape());
  const std::vector<std::pair<std::string, Shape>> want_convs = {
      {"conv.weight", {64, 3, 3, 3}},
      {"blocks.0.conv1.weight", {64, 64, 3, 3}},
      {"blocks.0.conv2.weight", {64, 64, 3, 3}},
      {"blocks.1.conv1.weight", {64, 64, 3, 3}},
      {"blocks.1.conv2.weight", {64, 64, 3, 3}},
      {"blocks.2.conv1.weight", {128, 64, 3, 3}},
      {"blocks.2.conv2.weight", {128, 128, 3, 3}},
      {"blocks.2.shortcut.0.weight", {128, 64, 1, 1}},
      {"blocks.3.conv1.weight", {128, 128, 3, 3}},
      {"blocks.3.conv2.weight", {128, 128, 3, 3}},
      {"blocks.4.conv1.weight", {256, 128, 3, 3}},
      {"blocks.4.conv2.weight", {256, 256, 3, 3}},
      {"blocks.4.shortcut.0.weight", {256, 128, 1, 1}},
      {"blocks.5.conv1.weight", {256, 256, 3, 3}},
      {"blocks.5.conv2.weight", {256, 256, 3, 3}}};
  CHECK(convs == want_convs);
  const NamedTensors wide_sd = wide->state_dict();
  REQUIRE(wide_sd.size() >= 2);
  CHECK(wide_sd[wide_sd.size() - 2].first == "fc.weight");
  CHECK(wide_sd[wide_sd.size() - 2].second.shape() == Shape{10, 256});
  CHECK(wide_sd.back().first == "fc.bias");
  CHECK(wide_sd.back().second.shape() == Shape{10});
  CHECK_THROWS_WITH(create_model("resnet21", {}), Catch::Contains("6k + 2"));
  CHECK_THROWS_WITH(create_model("vgg", {}), Catch::Contains("unknown model \"vgg\""));
}

TEST_CASE("initialization: Kaiming normal convs, BN gamma 1 or U[0,1], beta 0", "[layers]") {
  auto model = std::dynamic_pointer_cast<CifarResNet>(create_model("resnet20", {}));
  REQUIRE(model);
  const Tensor w =
      model->blocks->children()[0].second->state_dict()[0].second;  // conv1 [16,16,3,3]
  double s = 0, ss = 0;
  for (float v : w.vec()) {
    s += v;
    ss += double(v) * v;
  }
  const double var = ss / w.numel() - (s / w.numel()) * (s / w.numel());
  CHECK(var == Approx(2.0 / (16 * 9)).epsilon(0.15));  // N(0, 2 / fan_in)
  for (float v : model->bn->weight.vec()) CHECK(v == 1.0f);
  for (float v : model->bn->bias.vec()) CHECK(v == 0.0f);
  ModelOptions uo;
  uo.bn_init = BnInit::kUniform;
  auto u = std::dynamic_pointer_cast<CifarResNet>(create_model("resnet20", uo));
  // Every BN's gamma (784 channels) together: U[0, 1) (range, ends, mean, Kolmogorov-Smirnov).
  std::vector<float> gammas;
  for (BatchNorm* bn : u->modules_of<BatchNorm>())
    gammas.insert(gammas.end(), bn->weight.vec().begin(), bn->weight.vec().end());
  CHECK(gammas.size() == 784);
  minidl::testing::check_uniform01(gammas);
  for (BatchNorm* bn : u->modules_of<BatchNorm>())
    for (float v : bn->bias.vec()) CHECK(v == 0.0f);
  // Same seed, same weights; another seed, other weights.
  auto a = create_model("resnet8", {}), b = create_model("resnet8", {});
  ModelOptions o7;
  o7.seed = 7;
  auto c = create_model("resnet8", o7);
  CHECK(a->state_dict()[0].second.vec() == b->state_dict()[0].second.vec());
  CHECK(a->state_dict()[0].second.vec() != c->state_dict()[0].second.vec());
}

TEST_CASE("BatchNorm2d updates running stats PyTorch's way and eval uses them", "[layers][bn]") {
  Generator g(11);
  BatchNorm2d bn(3);
  Tensor x = randn({4, 3, 5, 5}, g, 2.0f, 1.0f);
  bn.train();
  bn(x);
  // Direct computation: running = 0.9 * init + 0.1 * batch statistic (unbiased variance).
  for (int64_t c = 0; c < 3; ++c) {
    double s = 0, ss = 0;
    const int64_t M = 4 * 25;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 25; ++i) s += x.data()[(n * 3 + c) * 25 + i];
    const double mean = s / M;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 25; ++i) {
        const double d = x.data()[(n * 3 + c) * 25 + i] - mean;
        ss += d * d;
      }
    CHECK(bn.running_mean.data()[c] == Approx(0.1 * mean).margin(1e-6));
    CHECK(bn.running_var.data()[c] == Approx(0.9 + 0.1 * ss / (M - 1)).margin(1e-6));
  }
  bn.eval();
  Tensor y = bn(x);
  const float rm = bn.running_mean.data()[1], rv = bn.running_var.data()[1];
  CHECK(y.data()[25] == Approx((x.data()[25] - rm) / std::sqrt(rv + 1e-5f)).margin(1e-5));
  // eval does not move the statistics
  CHECK(bn.running_mean.data()[1] == rm);
}

TEST_CASE("BatchNorm1d with one sample per channel refuses to train, like PyTorch",
          "[layers][bn]") {
  BatchNorm1d bn(4);
  Tensor x({1, 4});
  CHECK_THROWS_WITH(bn(x), Catch::Contains("more than 1 value per channel"));
  bn.eval();
  CHECK_NOTHROW(bn(x));
  CHECK_THROWS_WITH(bn(Tensor({2, 5})), Catch::Contains("BatchNorm1d(4)"));
}

TEST_CASE("BatchNorm1d on [N, C, L] normalizes each channel over all N * L values",
          "[layers][bn]") {
  // As layers/batch_norm.hpp states: one mean and variance per channel over the batch and every
  // position together (torch.nn.BatchNorm1d), not per position. Channel c holds
  // x[n, c, l] = c + (n + 1) * (l + 1): its N * L = 8 values are c + {1, 2, 3, 4, 2, 4, 6, 8}.
  BatchNorm1d bn(3);
  const int64_t N = 2, C = 3, L = 4;
  std::vector<float> v;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < L; ++l) v.push_back(float(c + (n + 1) * (l + 1)));
  Tensor x({N, C, L}, v);
  NoGradGuard ng;
  const Tensor y = bn(x);
  REQUIRE(y.shape() == Shape{N, C, L});
  const double mean = 30.0 / 8, var = 150.0 / 8 - mean * mean;  // of {1, 2, 3, 4, 2, 4, 6, 8}
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < L; ++l) {
        const double want = ((n + 1) * (l + 1) - mean) / std::sqrt(var + 1e-5);
        CHECK(y.data()[(n * C + c) * L + l] == Approx(want).margin(1e-5));
      }
  for (int64_t c = 0; c < C; ++c) {
    CHECK(bn.running_mean.data()[c] == Approx(0.1 * (c + mean)).margin(1e-6));
    CHECK(bn.running_var.data()[c] == Approx(0.9 + 0.1 * var * 8 / 7).margin(1e-5));
  }
  // A single value per channel (N * L = 1) cannot train; [1, C, 2] can.
  CHECK_THROWS_WITH(bn(Tensor({1, 3, 1})), Catch::Contains("more than 1 value per channel"));
  CHECK_NOTHROW(bn(Tensor({1, 3, 2})));
}

// In eval mode every op computes an image's result the same way whatever the batch, except that
// a Winograd convolution multiplies a chunk of images' tiles in one GEMM, whose rounding may
// depend on the chunk's size: logits then agree to 1e-5 relative, and the prediction exactly.
// With im2col convolutions only (no 3x3 stride-1 conv with >= 8 input channels) they agree bit
// for bit.
TEST_CASE("eval mode: one image gives its row of the batch (Winograd: to 1e-5, im2col: exactly)",
          "[layers][bn]") {
  for (const std::string name : {"resnet8", "stem-only"}) {
    Generator g(12);
    auto model = create_model("resnet8", {});
    // stem-only: conv 3 -> 16 (im2col, < 8 input channels) and BN, which must be exact.
    auto stem = std::make_shared<Sequential>();
    stem->add(std::make_shared<Conv2d>(Conv2dOptions(3, 16, 3).padding(1).bias(false), g));
    stem->add(std::make_shared<BatchNorm2d>(16));
    std::shared_ptr<Module> net = model;
    if (name == "stem-only") net = stem;
    // Give the running statistics non-trivial values first.
    net->train();
    {
      NoGradGuard ng;
      (*net)(randn({16, 3, 32, 32}, g));
    }
    net->eval();
    NoGradGuard ng;
    Tensor batch = randn({5, 3, 32, 32}, g);
    Tensor all = (*net)(batch);
    const int64_t per = all.numel() / 5;
    float scale = 0.0f;
    for (float v : all.vec()) scale = std::max(scale, std::abs(v));
    for (int64_t n = 0; n < 5; ++n) {
      Tensor one({1, 3, 32, 32});
      std::copy(batch.data() + n * 3072, batch.data() + (n + 1) * 3072, one.mutable_data());
      Tensor y = (*net)(one);
      REQUIRE(y.numel() == per);
      int64_t differ = 0, argmax_one = 0, argmax_all = 0;
      for (int64_t k = 0; k < per; ++k) {
        const float a = y.data()[k], b = all.data()[n * per + k];
        INFO(name << " image " << n << " output " << k << ": " << a << " vs " << b);
        differ += a != b;
        REQUIRE(std::abs(a - b) <= 1e-5f * scale);
        if (a > y.data()[argmax_one]) argmax_one = k;
        if (b > all.data()[n * per + argmax_all]) argmax_all = k;
      }
      if (name == "resnet8") CHECK(argmax_one == argmax_all);
      if (name == "stem-only") CHECK(differ == 0);  // bit for bit
    }
  }
}

TEST_CASE("checkpoint round trip keeps every tensor and the metadata", "[checkpoint]") {
  ModelOptions o;
  o.seed = 3;
  auto model = create_model("resnet8", o);
  Generator g(13);
  for (auto& [n, t] : model->named_buffers())
    for (float& v : t.mutable_vec()) v = g.uniform(0.5f, 2.0f);
  const std::string path = temp_path("roundtrip.safetensors");
  save_safetensors(path, model->state_dict(), {{"model", "resnet8"}, {"seed", "3"}});
  Checkpoint ck = load_safetensors(path);
  CHECK(ck.metadata.at("model") == "resnet8");
  NamedTensors sd = model->state_dict();
  REQUIRE(ck.tensors.size() == sd.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    CHECK(ck.tensors[i].first == sd[i].first);
    CHECK(ck.tensors[i].second.vec() == sd[i].second.vec());
  }
  auto loaded = train::load_model(path);
  NamedTensors ld = loaded->state_dict();
  for (size_t i = 0; i < sd.size(); ++i) CHECK(ld[i].second.vec() == sd[i].second.vec());
  // No temporary file is left behind.
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove(path);
}

TEST_CASE("bad checkpoints give errors that name the file or the tensor", "[checkpoint][errors]") {
  CHECK_THROWS_WITH(
      load_safetensors("/nonexistent/model.safetensors"),
      Catch::Contains("/nonexistent/model.safetensors") && Catch::Contains("does not exist"));
  // A tensor of the wrong shape.
  auto model = create_model("resnet8", {});
  NamedTensors sd = model->state_dict();
  NamedTensors bad;
  for (auto& [n, t] : sd) bad.emplace_back(n, n == "fc.weight" ? Tensor({10, 32}) : t);
  const std::string path = temp_path("wrongshape.safetensors");
  save_safetensors(path, bad, {{"model", "resnet8"}});
  CHECK_THROWS_WITH(train::load_model(path), Catch::Contains("fc.weight") &&
                                                 Catch::Contains("[10, 32]") &&
                                                 Catch::Contains("[10, 64]"));
  // A missing tensor, an unexpected tensor.
  NamedTensors missing(sd.begin() + 1, sd.end());
  CHECK_THROWS_WITH(model->load_state_dict(missing),
                    Catch::Contains("missing key \"conv.weight\""));
  NamedTensors extra = sd;
  extra.emplace_back("head.weight", Tensor({2}));
  CHECK_THROWS_WITH(model->load_state_dict(extra),
                    Catch::Contains("unexpected key \"head.weight\""));
  // A truncated file.
  save_safetensors(path, sd, {{"model", "resnet8"}});
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  CHECK_THROWS_WITH(load_safetensors(path), Catch::Contains(path) && Catch::Contains("truncated"));
  // Not a safetensors file at all.
  { std::ofstream(path) << "hello"; }
  CHECK_THROWS_WITH(load_safetensors(path), Catch::Contains("not a valid safetensors file"));
  std::filesystem::remove(path);
}
