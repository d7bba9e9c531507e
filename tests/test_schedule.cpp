// Learning-rate schedules (optim/schedule.hpp): every kind against values computed by hand,
// with and without warm-up, and the errors.
#include <catch2/catch.hpp>
#include <cmath>

#include "optim/schedule.hpp"

using minidl::optim::Schedule;

static Schedule make(const char* kind, int64_t total, int64_t warmup = 0) {
  Schedule s;
  s.kind = kind;
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

TEST_CASE("onecycle: a linear triangle from 0 to the base lr and back to 0", "[optim][schedule]") {
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
  s.kind = "step";
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("the schedule must be one of constant, "
                                                  "multistep, cosine, onecycle, got \"step\""));
  s.kind = "cosine";
  s.total_steps = 0;
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("total_steps >= 1"));
  s.total_steps = 10;
  s.warmup_steps = -1;
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("warmup_steps must be >= 0"));
  CHECK(minidl::optim::schedule_kinds().size() == 4);
}
