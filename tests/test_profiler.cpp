// The per-op profiler (core/profiler.hpp): what it records, when it records nothing, its table,
// and `bench --profile`, `bench --mode eval` and `train --profile`.
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>

#include "apps/cli.hpp"
#include "experiments/bn_only.hpp"
#include "train/trainer.hpp"
#include "core/ops.hpp"
#include "core/profiler.hpp"
#include "gradcheck.hpp"
#include "test_util.hpp"

using namespace minidl;

namespace {

/// The profiler's rows keyed by (name, backward).
std::map<std::pair<std::string, bool>, profiler::Row> rows_by_key() {
  std::map<std::pair<std::string, bool>, profiler::Row> m;
  for (const profiler::Row& r : profiler::rows()) m.emplace(std::make_pair(r.name, r.backward), r);
  return m;
}

/// Leaves the profiler disabled and empty, whatever a test did.
struct CleanProfiler {
  CleanProfiler() { clear(); }
  ~CleanProfiler() { clear(); }
  static void clear() {
    profiler::set_enabled(false);
    profiler::reset();
  }
};

/// linear (x [N, DI] -> [N, DO]) then cross_entropy, forward and backward. The weight and bias
/// take gradients; x does when `x_grad`.
void linear_step(int64_t N, int64_t DI, int64_t DO, bool x_grad) {
  Generator gen(7);
  Tensor x = minidl::testing::randn({N, DI}, gen, 1.0f, 0.0f, x_grad);
  Tensor w = minidl::testing::randn({DO, DI}, gen, 0.5f, 0.0f, true);
  Tensor b = minidl::testing::randn({DO}, gen, 0.5f, 0.0f, true);
  std::vector<int32_t> labels(N);
  for (int64_t i = 0; i < N; ++i) labels[i] = static_cast<int32_t>(i % DO);
  Tensor loss = ops::cross_entropy(ops::linear(x, w, b), labels);
  loss.backward();
}

/// Runs `fn` with the process's stdout (fd 1) redirected to a temporary file; returns what was
/// written.
std::string capture_stdout(const std::function<void()>& fn) {
  std::cout.flush();
  std::fflush(stdout);
  FILE* tmp = std::tmpfile();
  REQUIRE(tmp);
  const int saved = dup(STDOUT_FILENO);
  REQUIRE(saved >= 0);
  dup2(fileno(tmp), STDOUT_FILENO);
  auto restore = [&]() {
    std::fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
  };
  try {
    fn();
  } catch (...) {
    restore();
    std::fclose(tmp);
    throw;
  }
  restore();
  std::string out;
  std::rewind(tmp);
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), tmp)) out.append(buf.data(), n);
  std::fclose(tmp);
  return out;
}

/// Number of non-overlapping occurrences of `what` in `s`.
size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("a disabled profiler records nothing", "[profiler]") {
  CleanProfiler clean;
  REQUIRE_FALSE(profiler::enabled());  // off at start-up and after CleanProfiler
  linear_step(3, 5, 4, true);
  {
    profiler::Scope s("manual");
    profiler::add_flops(100.0);
  }
  CHECK(profiler::rows().empty());

  // A Scope opened while disabled stays inactive when the profiler is enabled before it closes.
  {
    profiler::Scope s("opened_disabled");
    profiler::set_enabled(true);
    profiler::add_flops(5.0);  // no open Scope on this thread: dropped
  }
  CHECK(profiler::rows().empty());
}

TEST_CASE("linear and cross_entropy record forward and backward rows with linear's FLOPs",
          "[profiler]") {
  CleanProfiler clean;
  const int64_t N = 3, DI = 5, DO = 4;
  const double gemm = 2.0 * N * DI * DO;  // 120
  profiler::set_enabled(true);
  const auto start = std::chrono::steady_clock::now();
  linear_step(N, DI, DO, /*x_grad=*/false);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  profiler::set_enabled(false);

  auto rows = rows_by_key();
  REQUIRE(rows.size() == 4);
  REQUIRE(rows.count({"linear", false}));
  REQUIRE(rows.count({"linear", true}));
  REQUIRE(rows.count({"cross_entropy", false}));
  REQUIRE(rows.count({"cross_entropy", true}));
  CHECK(rows[{"linear", false}].calls == 1);
  CHECK(rows[{"linear", true}].calls == 1);
  CHECK(rows[{"cross_entropy", false}].calls == 1);
  CHECK(rows[{"cross_entropy", true}].calls == 1);
  CHECK(rows[{"linear", false}].flops == gemm);
  CHECK(rows[{"linear", true}].flops == gemm);  // weight gradient only: x takes none
  CHECK(rows[{"cross_entropy", false}].flops == 0.0);
  CHECK(rows[{"cross_entropy", true}].flops == 0.0);
  // The four Scopes do not nest and all lie inside the step, so their times add up to at most
  // its wall time (on the same clock). That a Scope's time is at least its duration is the
  // sleep test below.
  double timed = 0.0;
  for (const auto& [key, r] : rows) timed += r.seconds;
  CHECK(timed <= wall);

  // rows() is sorted by decreasing time.
  const auto sorted = profiler::rows();
  for (size_t i = 1; i < sorted.size(); ++i) CHECK(sorted[i - 1].seconds >= sorted[i].seconds);

  const std::string t = profiler::table(1.0, 2);
  CHECK(t.find("linear") != std::string::npos);
  CHECK(t.find("cross_entropy") != std::string::npos);
  CHECK(count_of(t, "forward") == 2);
  CHECK(count_of(t, "backward") == 2);
  CHECK(count_of(t, "(not in any op)") == 1);
  CHECK(t.find("GFLOP/s") != std::string::npos);
  // header, rule, 4 rows, "(not in any op)", rule, total
  CHECK(count_of(t, "\n") == 9);
  CHECK_THROWS_AS(profiler::table(1.0, 0), std::invalid_argument);
  CHECK_THROWS_AS(profiler::table(0.0, 1), std::invalid_argument);

  SECTION("with x taking a gradient, the backward does two GEMMs; rows accumulate") {
    profiler::set_enabled(true);
    linear_step(N, DI, DO, /*x_grad=*/true);
    profiler::set_enabled(false);
    auto more = rows_by_key();
    CHECK(more[{"linear", false}].calls == 2);
    CHECK(more[{"linear", false}].flops == 2 * gemm);
    CHECK(more[{"linear", true}].calls == 2);
    CHECK(more[{"linear", true}].flops == gemm + 2 * gemm);
  }
  SECTION("reset clears every row") {
    profiler::reset();
    CHECK(profiler::rows().empty());
  }
}

TEST_CASE("a Scope records the time it was open, in seconds", "[profiler]") {
  CleanProfiler clean;
  profiler::set_enabled(true);
  // std::this_thread::sleep_for blocks at least the given time as measured by steady_clock,
  // the profiler's clock: the row holds at least 30 ms, and at most the time around both calls.
  const auto start = std::chrono::steady_clock::now();
  {
    profiler::Scope s("sleep");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    profiler::Scope s("sleep");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  profiler::set_enabled(false);
  auto rows = rows_by_key();
  REQUIRE(rows.size() == 1);
  CHECK(rows[{"sleep", false}].calls == 2);
  CHECK(rows[{"sleep", false}].seconds >= 0.030);
  CHECK(rows[{"sleep", false}].seconds <= wall);
}

TEST_CASE("nested Scopes: FLOPs go to the innermost, each name gets its own row", "[profiler]") {
  CleanProfiler clean;
  profiler::set_enabled(true);
  {
    profiler::Scope outer("outer");
    profiler::add_flops(1.0);
    {
      profiler::Scope inner("inner");
      profiler::add_flops(10.0);
    }
    {
      profiler::Scope inner_backward("inner", /*backward=*/true);
      profiler::add_flops(1000.0);
    }
    profiler::add_flops(100.0);
    // OpenMP workers have no open Scope: their add_flops are dropped.
#pragma omp parallel num_threads(2)
    {
      if (omp_get_thread_num() != 0) profiler::add_flops(1e6);
    }
  }
  profiler::add_flops(5.0);  // no Scope open any more: dropped
  auto rows = rows_by_key();
  REQUIRE(rows.size() == 3);
  CHECK(rows[{"outer", false}].flops == 101.0);
  CHECK(rows[{"inner", false}].flops == 10.0);
  CHECK(rows[{"inner", true}].flops == 1000.0);
  CHECK(rows[{"outer", false}].calls == 1);
  // Inclusive time: the outer Scope's time contains both inner ones.
  CHECK(rows[{"outer", false}].seconds >=
        rows[{"inner", false}].seconds + rows[{"inner", true}].seconds);
}

TEST_CASE("bench --profile profiles the timed steps only", "[profiler][bench]") {
  CleanProfiler clean;
  app::BenchConfig cfg;
  cfg.model = "resnet8";
  cfg.batch_size = 4;
  cfg.steps = 1;
  cfg.warmup = 0;
  cfg.profile = true;
  std::string out;
  REQUIRE_NOTHROW(out = capture_stdout([&] { app::run_bench(cfg); }));
  CHECK_FALSE(profiler::enabled());  // bench switches it off again
  CHECK(out.find("resnet8 --mode train") != std::string::npos);
  CHECK(count_of(out, "per-op profile of the 1 timed steps") == 1);
  for (const char* name :
       {"linear", "batch_norm_relu", "batch_norm_add_relu", "global_avg_pool2d", "cross_entropy",
        "optimizer.step", "optimizer.zero_grad", "(not in any op)"}) {
    CHECK(out.find(name) != std::string::npos);
  }
  auto rows = rows_by_key();
  // resnet8's head: Linear(64 -> 10) on 4 images.
  CHECK(rows[{"linear", false}].calls == 1);
  CHECK(rows[{"linear", false}].flops == 2.0 * 4 * 64 * 10);
  CHECK(rows[{"linear", true}].calls == 1);
  // Backward: the input's and the weight's gradient GEMMs, 2 N 64 10 FLOPs each.
  CHECK(rows[{"linear", true}].flops == 2 * 2.0 * 4 * 64 * 10);
  CHECK(rows[{"optimizer.step", false}].calls == 1);
  CHECK(rows[{"optimizer.zero_grad", false}].calls == 1);
  CHECK(rows.count({"batch_norm_add_relu", true}) == 1);

  SECTION("the warm-up steps are not in the table") {
    cfg.warmup = 1;
    cfg.steps = 2;
    capture_stdout([&] { app::run_bench(cfg); });
    auto r2 = rows_by_key();
    CHECK(r2[{"linear", false}].calls == 2);
    CHECK(r2[{"cross_entropy", true}].calls == 2);
    CHECK(r2[{"optimizer.step", false}].calls == 2);
  }
}

TEST_CASE("bench --mode eval times inference-mode forward passes, batch 1 allowed",
          "[profiler][bench]") {
  CleanProfiler clean;
  app::BenchConfig cfg;
  cfg.model = "resnet8";
  cfg.batch_size = 1;
  cfg.steps = 2;
  cfg.warmup = 1;
  cfg.mode = app::BenchMode::kEval;
  cfg.json = true;
  cfg.profile = true;
  std::string out;
  REQUIRE_NOTHROW(out = capture_stdout([&] { app::run_bench(cfg); }));
  const auto j = nlohmann::json::parse(out);  // stdout is one JSON object (the table: stderr)
  for (const char* key : {"framework", "model", "mode", "train_only", "batch_size", "threads",
                          "steps", "images_per_second", "seconds_per_step", "forward_seconds",
                          "backward_seconds", "peak_rss_mib"}) {
    CHECK(j.contains(key));
  }
  CHECK(j.at("mode") == "eval");
  CHECK(j.at("model") == "resnet8");
  CHECK(j.at("batch_size") == 1);
  CHECK(j.at("steps") == 2);
  CHECK(j.at("backward_seconds").get<double>() == 0.0);
  CHECK(j.at("forward_seconds").get<double>() > 0.0);
  CHECK(j.at("seconds_per_step").get<double>() == j.at("forward_seconds").get<double>());
  CHECK(j.at("images_per_second").get<double>() ==
        Approx(1.0 / j.at("seconds_per_step").get<double>()));
  CHECK(j.at("peak_rss_mib").get<double>() > 0.0);

  // Forward only, BN in inference mode: no backward rows, no optimizer, no loss.
  auto rows = rows_by_key();
  REQUIRE_FALSE(rows.empty());
  for (const auto& [key, r] : rows) CHECK_FALSE(r.backward);
  CHECK(rows.count({"optimizer.step", false}) == 0);
  CHECK(rows.count({"cross_entropy", false}) == 0);
  CHECK(rows[{"linear", false}].calls == 2);
  CHECK(rows[{"linear", false}].flops == 2 * 2.0 * 1 * 64 * 10);

  SECTION("text output names the mode") {
    cfg.json = false;
    cfg.profile = false;
    const std::string text = capture_stdout([&] { app::run_bench(cfg); });
    CHECK(text.find("resnet8 --mode eval") != std::string::npos);
    CHECK(text.find("batch 1,") != std::string::npos);
  }
  SECTION("train mode reports its mode and a backward time") {
    cfg.mode = app::BenchMode::kTrain;
    cfg.batch_size = 2;
    cfg.profile = false;
    const auto jt = nlohmann::json::parse(capture_stdout([&] { app::run_bench(cfg); }));
    CHECK(jt.at("mode") == "train");
    CHECK(jt.at("backward_seconds").get<double>() > 0.0);
  }
}

TEST_CASE("bench rejects a bad --mode, and batch 1 in train mode", "[profiler][bench]") {
  app::BenchConfig cfg;
  cfg.model = "resnet8";
  cfg.steps = 1;
  cfg.warmup = 0;
  {  // the mode is an enum: a bad name is refused by the flag's parser
    auto [status, out] = minidl::testing::run_cli("bench --model resnet8 --mode inference");
    CHECK(status == 1);
    CHECK_THAT(out, Catch::Contains("--mode") && Catch::Contains("inference"));
  }
  cfg.mode = app::BenchMode::kTrain;
  cfg.batch_size = 1;
  CHECK_THROWS_WITH(app::run_bench(cfg),
                    Catch::Contains("--batch-size") && Catch::Contains(">= 2 with --mode train"));
  cfg.mode = app::BenchMode::kEval;
  cfg.batch_size = 0;
  CHECK_THROWS_WITH(app::run_bench(cfg),
                    Catch::Contains("--batch-size") && Catch::Contains(">= 1"));
  cfg.batch_size = 1;
  cfg.steps = 0;
  CHECK_THROWS_WITH(app::run_bench(cfg), Catch::Contains("--steps"));
}

TEST_CASE("train --profile prints one table, after the first epoch", "[profiler][train]") {
  const std::string out_dir = minidl::testing::fresh_dir("profile_train");
  const std::string cmd = std::string(MINIDL_BINARY) + " train --data " +
                          minidl::testing::data_dir() +
                          " --model resnet8 --epochs 2 --batch-size 64 --limit-train 256"
                          " --limit-test 100 --profile --out " +
                          out_dir + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe);
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  INFO(out);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(count_of(out, "per-op profile of epoch 1 (4 batches") == 1);
  CHECK(count_of(out, "(not in any op)") == 1);
  const size_t epoch1 = out.find("epoch 1/2"), table = out.find("per-op profile"),
               epoch2 = out.find("epoch 2/2");
  REQUIRE(epoch1 != std::string::npos);
  REQUIRE(epoch2 != std::string::npos);
  CHECK(epoch1 < table);
  CHECK(table < epoch2);
  const std::string t = out.substr(table, epoch2 - table);
  for (const char* name :
       {"linear", "batch_norm_relu", "cross_entropy", "optimizer.step", "optimizer.zero_grad"}) {
    CHECK(t.find(name) != std::string::npos);
  }
  std::filesystem::remove_all(out_dir);
}

TEST_CASE("the roofline: ceilings read from the JSON file, each op's fraction computed from them",
          "[profiler][roofline]") {
  const std::string dir = testing::fresh_dir("roofline");
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/roofline.json";
  {
    std::ofstream out(path);
    out << R"({"ceilings": [{"threads": 1, "sgemm_peak_gflops": 100, "triad_gb_per_s": 10},
                            {"threads": 2, "sgemm_peak_gflops": 200, "triad_gb_per_s": 20}]})";
  }
  const profiler::Ceilings c = profiler::read_ceilings(path, 2);
  CHECK(c.threads == 2);
  CHECK(c.gflops == 200.0);
  CHECK(c.bytes_per_s == 20e9);
  CHECK_THROWS_WITH(profiler::read_ceilings(path, 3),
                    Catch::Contains("no ceilings for 3 threads (it has: 1, 2)"));
  CHECK_THROWS_WITH(profiler::read_ceilings(dir + "/missing.json", 1),
                    Catch::Contains("cannot open"));
  // Compute-bound (intensity 1000 FLOP/B: the ridge is 10): 50 GFLOP/s of 200.
  profiler::Row conv{"conv", false, 1, 1.0, 10e9, 50e9, 50e6};
  CHECK(profiler::roofline_fraction(conv, c) == Approx(0.25));
  // Memory-bound with FLOPs (intensity 1 FLOP/B: ceiling 20 GFLOP/s): 5 GFLOP/s.
  profiler::Row thin{"thin", false, 1, 1.0, 5e9, 5e9, 5e9};
  CHECK(profiler::roofline_fraction(thin, c) == Approx(0.25));
  // Bytes only: 10 GB/s of 20.
  profiler::Row bn{"bn", false, 1, 0.5, 0.0, 0.0, 5e9};
  CHECK(profiler::roofline_fraction(bn, c) == Approx(0.5));
  // Neither: no fraction.
  profiler::Row none{"none", false, 1, 0.5, 0.0, 0.0, 0.0};
  CHECK(profiler::roofline_fraction(none, c) < 0.0);

  // The table of a real op: a BatchNorm step reports bytes (and a "% roof" with ceilings).
  profiler::reset();
  profiler::set_enabled(true);
  {
    Generator g(3);
    Tensor x = testing::randn({4, 3, 8, 8}, g);
    Tensor gamma = Tensor::full({3}, 1.0f), beta({3}), rm({3}), rv = Tensor::full({3}, 1.0f);
    ops::batch_norm(x, gamma, beta, rm, rv, true, 0.1f, 1e-5f);
  }
  profiler::set_enabled(false);
  const auto rows = profiler::rows();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].bytes == 4.0 * 4 * 3 * 64 * 3);  // x twice, y once
  const std::string plain = profiler::table(1.0, 1);
  CHECK(plain.find("% roof") == std::string::npos);
  CHECK(plain.find("MB/step") != std::string::npos);
  const std::string t = profiler::table(1.0, 1, &c);
  CHECK(t.find("% roof") != std::string::npos);
  CHECK(t.find("SGEMM peak 200.0 GFLOP/s, triad 20.0 GB/s") != std::string::npos);
  profiler::reset();
}
