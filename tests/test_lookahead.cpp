// Lookahead with an EMA (optim/lookahead.hpp, airbench94's LookaheadState): updates of
// parameters and BatchNorm buffers against numbers computed by hand, decay 0 and 1, the decay
// schedule, and the errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "layers/batch_norm.hpp"
#include "layers/linear.hpp"
#include "layers/sequential.hpp"
#include "optim/lookahead.hpp"
#include "optim/sgd.hpp"

using namespace minidl;
using minidl::optim::Lookahead;

/// Linear(in, out) then BatchNorm1d(out): state_dict "0.weight", "0.bias", "1.weight",
/// "1.bias", "1.running_mean", "1.running_var". Without `bias`, no "0.bias".
static std::shared_ptr<Sequential> tiny(int64_t in = 2, int64_t out = 2, bool bias = true) {
  Generator gen(1);
  auto m = std::make_shared<Sequential>();
  m->add(std::make_shared<Linear>(LinearOptions(in, out).bias(bias), gen));
  m->add(std::make_shared<BatchNorm1d>(out));
  return m;
}

static void fill_all(Module& m, float v) {
  for (auto& [name, t] : m.state_dict()) t.fill_(v);
}

/// Every element of every tensor of `tensors` equals v.
static void check_all(const NamedTensors& tensors, float v) {
  for (const auto& [name, t] : tensors) {
    INFO(name);
    for (int64_t i = 0; i < t.numel(); ++i) CHECK(t.data()[i] == v);
  }
}

TEST_CASE("Lookahead: ema = lerp(ema, net, 1 - decay), then net = ema", "[optim][lookahead]") {
  auto model = tiny();
  fill_all(*model, 1.0f);
  Lookahead la(*model);  // ema = 1 everywhere (a copy: the net's changes below do not reach it)
  REQUIRE(la.ema().size() == 6);
  CHECK(la.ema()[4].first == "1.running_mean");
  CHECK(la.ema()[5].first == "1.running_var");
  optim::SGD sgd(model->parameters(), optim::SGDOptions{});
  const NamedTensors before = model->state_dict();

  // net 3, decay 0.25 (w = 0.75): ema = 1 + 0.75 * (3 - 1) = 2.5, in the ema and the net, for
  // parameters and buffers alike.
  fill_all(*model, 3.0f);
  la.update(*model, 0.25f);
  check_all(la.ema(), 2.5f);
  check_all(model->state_dict(), 2.5f);
  // In place: the model's tensors are the same objects, which the optimizer still holds.
  const NamedTensors after = model->state_dict();
  for (size_t i = 0; i < after.size(); ++i) CHECK(after[i].second.same(before[i].second));
  for (const Tensor& p : sgd.params()) CHECK(p.data()[0] == 2.5f);

  // Second update, decay 0.5 (w = 0.5): the weights moved to 5, the running mean to -1.5.
  //   5 -> 2.5 + 0.5 * (5 - 2.5) = 3.75;   -1.5 -> 2.5 + 0.5 * (-1.5 - 2.5) = 0.5
  fill_all(*model, 5.0f);
  auto* bn = dynamic_cast<BatchNorm*>(model->children()[1].second.get());
  REQUIRE(bn);
  bn->running_mean.fill_(-1.5f);
  la.update(*model, 0.5f);
  for (const auto& [name, t] : model->state_dict()) {
    INFO(name);
    CHECK(t.data()[1] == (name == "1.running_mean" ? 0.5f : 3.75f));
  }
  CHECK(la.ema()[4].second.data()[0] == 0.5f);
  CHECK(la.ema()[5].second.data()[0] == 3.75f);

  // Third, decay 0.875 (w = 0.125 < 0.5: torch's branch ema + w * (net - ema)), net 11.75:
  //   3.75 + 0.125 * (11.75 - 3.75) = 4.75;   running mean: 0.5 + 0.125 * (11.75 - 0.5) = 1.90625
  fill_all(*model, 11.75f);
  la.update(*model, 0.875f);
  for (const NamedTensors& tensors : {la.ema(), model->state_dict()}) {
    for (const auto& [name, t] : tensors) {
      INFO(name);
      for (int64_t i = 0; i < t.numel(); ++i)
        CHECK(t.data()[i] == (name == "1.running_mean" ? 1.90625f : 4.75f));
    }
  }
}

TEST_CASE("Lookahead: decay 1 sets the net to the EMA, decay 0 the EMA to the net",
          "[optim][lookahead]") {
  auto model = tiny();
  fill_all(*model, 1e8f);
  Lookahead la(*model);
  // decay 0: ema = net exactly, even where ema + 1 * (net - ema) would round to 0 (1e8 - 1
  // rounds to 1e8 in float).
  fill_all(*model, 1.0f);
  la.update(*model, 0.0f);
  check_all(la.ema(), 1.0f);
  check_all(model->state_dict(), 1.0f);
  // decay 1: the net becomes the EMA, which does not move.
  fill_all(*model, -7.25f);
  la.update(*model, 1.0f);
  check_all(la.ema(), 1.0f);
  check_all(model->state_dict(), 1.0f);
  // Values that differ per element: the EMA keeps them (decay 1), and the net gets them.
  int k = 0;
  for (auto& [name, t] : model->state_dict())
    for (int64_t i = 0; i < t.numel(); ++i) t.mutable_data()[i] = 0.1f * static_cast<float>(++k);
  la.update(*model, 0.0f);
  fill_all(*model, 9.0f);
  la.update(*model, 1.0f);
  k = 0;
  for (const auto& [name, t] : model->state_dict())
    for (int64_t i = 0; i < t.numel(); ++i) CHECK(t.data()[i] == 0.1f * static_cast<float>(++k));
}

TEST_CASE("Lookahead::decay: 0.95^5 * (step / total)^3", "[optim][lookahead]") {
  const float top = static_cast<float>(0.7737809375);  // 0.95^5, exactly, rounded to float
  CHECK(Lookahead::decay(476, 476) == top);
  CHECK(Lookahead::decay(238, 476) == top / 8);  // (1/2)^3
  CHECK(Lookahead::decay(100, 100) == top);
  CHECK(Lookahead::decay(25, 100) == top / 64);  // (1/4)^3
  CHECK(Lookahead::decay(0, 476) == 0.0f);
  CHECK(Lookahead::decay(5, 476) == Approx(0.7737809375 * std::pow(5.0 / 476, 3)));  // 9.0e-7
  CHECK(Lookahead::decay(400, 476) == Approx(0.7737809375 * std::pow(400.0 / 476, 3)));
  CHECK_THROWS_WITH(Lookahead::decay(0, 0), Catch::Contains("total_steps must be >= 1"));
  CHECK_THROWS_WITH(Lookahead::decay(-1, 10), Catch::Contains("step must be in [0, total_steps"));
  CHECK_THROWS_WITH(Lookahead::decay(11, 10), Catch::Contains("got 11"));
}

TEST_CASE("Lookahead: a different model or a bad decay is refused, with nothing changed",
          "[optim][lookahead]") {
  auto model = tiny();
  fill_all(*model, 1.0f);
  Lookahead la(*model);
  auto wider = tiny(2, 3);
  CHECK_THROWS_WITH(la.update(*wider, 0.5f),
                    Catch::Contains("\"0.weight\" has shape [3, 2], its EMA has shape [2, 2]"));
  auto no_bias = tiny(2, 2, false);
  CHECK_THROWS_WITH(la.update(*no_bias, 0.5f),
                    Catch::Contains("tensor 1 is \"1.weight\", expected \"0.bias\""));
  auto linear_only = std::make_shared<Sequential>();
  Generator gen(1);
  linear_only->add(std::make_shared<Linear>(LinearOptions(2, 2), gen));
  CHECK_THROWS_WITH(la.update(*linear_only, 0.5f),
                    Catch::Contains("the model has no tensor \"1.weight\""));
  auto longer = tiny();
  longer->add(std::make_shared<Linear>(LinearOptions(2, 2), gen));
  CHECK_THROWS_WITH(la.update(*longer, 0.5f), Catch::Contains("a tensor \"2.weight\""));
  fill_all(*model, 3.0f);
  CHECK_THROWS_WITH(la.update(*model, 1.5f), Catch::Contains("decay must be in [0, 1]"));
  CHECK_THROWS(la.update(*model, -0.1f));
  CHECK_THROWS(la.update(*model, std::numeric_limits<float>::quiet_NaN()));
  check_all(la.ema(), 1.0f);
  check_all(model->state_dict(), 3.0f);
  la.update(*model, 0.5f);  // the right model still works: 1 + 0.5 * (3 - 1)
  check_all(model->state_dict(), 2.0f);
}
