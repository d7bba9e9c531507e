// Learning-rate schedules (optim/schedule.hpp): every kind against values computed by hand,
// with and without warm-up, airbench94's piecewise schedule against its formula, and the
// errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <utility>

#include "apps/cli.hpp"
#include "experiments/bn_only.hpp"
#include "train/trainer.hpp"
#include "optim/schedule.hpp"

using minidl::optim::Schedule;

static Schedule make(const char* kind, int64_t total, int64_t warmup = 0) {
  Schedule s;
  s.kind = minidl::parse_enum<minidl::optim::ScheduleKind>(kind, "kind");
  s.base_lr = 0.4f;
  s.total_steps = total;
  s.warmup_steps = warmup;
  s.validate();
  return s;
}

TEST_CASE("constant and multistep schedules", "[optim][schedule]") {
  const Schedule c = make("constant", 100);
  CHECK(c.lr(0) == 0.4f);
  CHECK(c.lr(99) == 0.4f);
  Schedule m = make("multistep", 100);
  m.milestones = {50, 75};
  m.gamma = 0.1f;
  CHECK(m.lr(49) == Approx(0.4));
  CHECK(m.lr(50) == Approx(0.04));  // t >= 50: one milestone passed
  CHECK(m.lr(74) == Approx(0.04));
  CHECK(m.lr(75) == Approx(0.004));  // both
  CHECK(m.lr(99) == Approx(0.004));
}

TEST_CASE("cosine schedule: (1 + cos(pi t / T)) / 2 of the base lr", "[optim][schedule]") {
  const Schedule s = make("cosine", 100);
  CHECK(s.lr(0) == Approx(0.4));
  CHECK(s.lr(25) == Approx(0.4 * (1 + std::cos(M_PI / 4)) / 2));  // 0.3414
  CHECK(s.lr(50) == Approx(0.2));
  CHECK(s.lr(100) == Approx(0.0).margin(1e-9));
  CHECK(s.lr(150) == Approx(0.0).margin(1e-9));  // held at 0 past T
}

TEST_CASE("onecycle: up from base_lr / warmup_steps to the base lr, then linearly down to 0",
          "[optim][schedule]") {
  const Schedule s = make("onecycle", 100, 20);
  CHECK(s.lr(0) == Approx(0.4 * 1 / 20));  // (t + 1) / warmup
  CHECK(s.lr(9) == Approx(0.4 * 10 / 20));
  CHECK(s.lr(19) == Approx(0.4));  // the peak at the end of the warm-up
  CHECK(s.lr(20) == Approx(0.4));  // then (T - t) / (T - warmup)
  CHECK(s.lr(60) == Approx(0.4 * 40 / 80));
  CHECK(s.lr(100) == Approx(0.0).margin(1e-9));
  // Without warm-up it starts at the peak.
  const Schedule n = make("onecycle", 10, 0);
  CHECK(n.lr(0) == Approx(0.4));
  CHECK(n.lr(5) == Approx(0.2));
}

TEST_CASE("warm-up scales any schedule by (t + 1) / warmup_steps", "[optim][schedule]") {
  const Schedule c = make("cosine", 100, 10);
  CHECK(c.lr(0) == Approx(0.4 * (1 + std::cos(0.0)) / 2 * 0.1));
  CHECK(c.lr(4) == Approx(0.4 * (1 + std::cos(M_PI * 4 / 100)) / 2 * 0.5));
  CHECK(c.lr(10) == Approx(0.4 * (1 + std::cos(M_PI * 10 / 100)) / 2));  // warm-up over
  Schedule m = make("multistep", 100, 4);
  m.milestones = {2};
  CHECK(m.lr(1) == Approx(0.4 * 2 / 4));        // before the milestone, in the warm-up
  CHECK(m.lr(2) == Approx(0.4 * 0.1 * 3 / 4));  // past the milestone and in the warm-up
}

TEST_CASE("schedule errors", "[optim][schedule]") {
  Schedule s;
  using minidl::optim::ScheduleKind;
  CHECK_THROWS_WITH(minidl::parse_enum<ScheduleKind>("step", "the schedule"),
                    Catch::Contains("the schedule must be constant, multistep, cosine, "
                                    "onecycle or piecewise, got \"step\""));
  CHECK(minidl::parse_enum<ScheduleKind>("onecycle", "") == ScheduleKind::kOneCycle);
  CHECK(minidl::name_of(ScheduleKind::kMultistep) == "multistep");
  s.kind = ScheduleKind::kCosine;
  s.total_steps = 0;
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("total_steps >= 1"));
  s.total_steps = 10;
  s.warmup_steps = -1;
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("warmup_steps must be >= 0"));
  CHECK(minidl::names_of<ScheduleKind>().size() == 5);
}

TEST_CASE("piecewise: linear between the knots, flat outside them", "[optim][schedule]") {
  Schedule s = make("constant", 100);
  s.kind = minidl::optim::ScheduleKind::kPiecewise;
  s.knots = {{10, 0.5}, {20, 1.5}, {40, 0.0}};
  s.validate();
  CHECK(s.lr(0) == Approx(0.4 * 0.5));  // before the first knot: its factor
  CHECK(s.lr(10) == Approx(0.4 * 0.5));
  CHECK(s.lr(15) == Approx(0.4 * 1.0));
  CHECK(s.lr(20) == Approx(0.4 * 1.5));
  CHECK(s.lr(30) == Approx(0.4 * 0.75));
  CHECK(s.lr(40) == 0.0f);
  CHECK(s.lr(100) == 0.0f);  // after the last knot: its factor
  s.knots = {{0, 0.25}};     // one knot: constant
  CHECK(s.lr(0) == 0.1f);
  CHECK(s.lr(99) == 0.1f);
  // A warm-up multiplies the factor, as for the other kinds.
  s.knots = {{0, 1.0}, {10, 0.0}};
  s.warmup_steps = 4;
  s.validate();
  CHECK(s.lr(1) == Approx(0.4 * 0.9 * 2 / 4));
  CHECK(s.lr(3) == Approx(0.4 * 0.7));  // (3 + 1) / 4: the warm-up's last step
  CHECK(s.lr(5) == Approx(0.4 * 0.5));
  // Nothing sets knots but airbench94's recipe: other recipes refuse the kind, naming it.
  minidl::train::TrainOptions o;
  o.schedule = minidl::optim::ScheduleKind::kPiecewise;
  CHECK_THROWS_WITH(minidl::train::validate(o), Catch::StartsWith("schedule piecewise"));
  o.schedule = minidl::optim::ScheduleKind::kOneCycle;
  CHECK_NOTHROW(minidl::train::validate(o));
}

TEST_CASE("piecewise: airbench94's schedule equals its formula at every step",
          "[optim][schedule]") {
  const int64_t T = 476;
  const int64_t W = 109;  // int(0.23 * 476) = int(109.48)
  for (const float base : {1.0f, 0.4f, 2.0f / 3.0f}) {
    const Schedule s = Schedule::airbench94(T, base);
    REQUIRE(s.knots.size() == 3);
    CHECK(s.knots[1] == std::pair<int64_t, double>{W, 1.0});
    // get_lr of legacy/airbench94.py in double, times the base lr, rounded once to float.
    const auto hand = [&](int64_t t) {
      const double f = t < W ? 0.2 * (1.0 - static_cast<double>(t) / W) + static_cast<double>(t) / W
                             : 1.0 - 0.93 * static_cast<double>(t - W) / (T - W);
      return static_cast<float>(static_cast<double>(base) * f);
    };
    for (const int64_t t : {0, 50, 108, 109, 200, 475, 476}) {
      INFO("t = " << t);
      CHECK(s.lr(t) == hand(t));
    }
    CHECK(s.lr(0) == static_cast<float>(base * 0.2));
    CHECK(s.lr(W) == base);
    CHECK(s.lr(T) == static_cast<float>(base * 0.07));
    int64_t differ = 0;
    for (int64_t t = 0; t <= T; ++t) differ += s.lr(t) != hand(t);
    CHECK(differ == 0);  // bit for bit at every step
  }
  CHECK_THROWS_WITH(Schedule::airbench94(4, 1.0f), Catch::Contains("strictly increasing"));
}

TEST_CASE("piecewise schedule errors", "[optim][schedule]") {
  Schedule s;
  s.kind = minidl::optim::ScheduleKind::kPiecewise;
  s.total_steps = 10;
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("needs at least one knot (step, factor)"));
  s.knots = {{0, 1.0}, {5, 0.5}, {5, 0.1}};
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("knot steps must be strictly increasing; "
                                                  "knot 2 has step 5 after 5"));
  s.knots = {{0, 1.0}, {5, 0.5}, {3, 0.1}};
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("knot 2 has step 3 after 5"));
  s.knots = {{0, 1.0}, {5, -0.5}};
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("factors must be finite and >= 0; knot 1 has"));
  s.knots = {{0, std::nan("")}};
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("finite and >= 0; knot 0"));
  s.knots = {{0, 1.0}, {1, HUGE_VAL}};
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("finite and >= 0; knot 1"));
  s.knots = {{0, 0.0}, {1, 2.0}};
  CHECK_NOTHROW(s.validate());
  s.kind = minidl::optim::ScheduleKind::kCosine;  // the knots of another kind are not read
  s.knots.clear();
  CHECK_NOTHROW(s.validate());
}
