// Bad input gives a clear error naming the file or flag, and nothing saved is lost: crafted
// checkpoint headers, checkpoints holding NaN, training state that does not fit, config.json
// of the wrong types, flags out of range, divergence, and runs killed at random moments.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/cli.hpp"
#include "experiments/bn_only.hpp"
#include "train/trainer.hpp"
#include "core/safetensors.hpp"
#include "layers/models/registry.hpp"
#include "test_util.hpp"

using minidl::testing::data_dir;
using minidl::testing::fresh_dir;
using minidl::testing::read_file;
using minidl::testing::run_cli;
using minidl::testing::safetensors_bytes;
using minidl::testing::tensors_of;
using minidl::testing::write_file;

using namespace minidl;
namespace fs = std::filesystem;

namespace {}  // namespace

TEST_CASE("crafted safetensors headers are refused with the file and the entry named",
          "[errors][safetensors]") {
  const std::string dir = fresh_dir("bad_safetensors");
  fs::create_directories(dir);
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  // (file bytes, what the message must say)
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty (0 bytes)"},
      {"abcd", "shorter than the 8-byte"},
      {safetensors_bytes("{}").substr(0, 8) + "{", "exceeds the file size"},
      {safetensors_bytes("{abc"), "not valid JSON"},
      {safetensors_bytes("[1, 2]"), "not a JSON object"},
      {safetensors_bytes("{\"__metadata__\": " + deep + "}"), "nests arrays or objects"},
      {safetensors_bytes("{\"__metadata__\": {\"a\": " + deep + "}}"), "nests arrays or objects"},
      {safetensors_bytes("{\"__metadata__\": [1]}"), "\"__metadata__\" is not an object"},
      {safetensors_bytes("{\"__metadata__\": {\"epoch\": 3}}"), "entry \"epoch\" is not a string"},
      {safetensors_bytes("{\"w\": 5}"), "tensor \"w\" is not an object"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}"),
       "tensor \"w\" is not an object with dtype"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": []}}",
                         "abcd"),
       "data_offsets must be two non-negative integers"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}",
                         "abcd"),
       "data_offsets must be two non-negative integers"},
      {safetensors_bytes(
           "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", 4]}}", "abcd"),
       "data_offsets must be two non-negative integers"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 4]}}",
                         "abcd"),
       "data_offsets must be two non-negative integers"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
                         "abcd"),
       "outside the 4 data bytes"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                         "abcdefgh"),
       "4 bytes for 2 F32 values"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
                         "abcd"),
       "not a non-negative integer"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], "
                         "\"data_offsets\": [0, 4]}}",
                         "abcd"),
       "needs more bytes than the file's 4 data bytes"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
                         "\"data_offsets\": [0, 4]}}",
                         "abcd"),
       "at most 8"},
      {safetensors_bytes("{\"w\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                         "abcd"),
       "minidl reads F32"},
      {safetensors_bytes("{\"w\": {\"dtype\": 7, \"shape\": [1], \"data_offsets\": [0, 4]}}",
                         "abcd"),
       "dtype is not a string"},
  };
  int i = 0;
  for (const auto& [bytes, expected] : cases) {
    const std::string path = dir + "/case" + std::to_string(i++) + ".safetensors";
    write_file(path, bytes);
    INFO("case " << i - 1 << ": " << expected);
    CHECK_THROWS_WITH(load_safetensors(path),
                      Catch::Contains("\"" + path + "\"") && Catch::Contains(expected));
  }
  // A directory is not a checkpoint.
  CHECK_THROWS_WITH(load_safetensors(dir), Catch::Contains(dir));
  // A valid header with a non-F32 num_batches_tracked (PyTorch's) still loads.
  write_file(dir + "/ok.safetensors",
             safetensors_bytes("{\"bn.num_batches_tracked\": {\"dtype\": \"I64\", \"shape\": [], "
                               "\"data_offsets\": [0, 8]}, \"w\": {\"dtype\": \"F32\", \"shape\": "
                               "[1], \"data_offsets\": [8, 12]}}",
                               std::string(8, '\0') + std::string("\0\0\x80\x3f", 4)));
  const Checkpoint ok = load_safetensors(dir + "/ok.safetensors");
  REQUIRE(ok.tensors.size() == 1);
  CHECK(ok.tensors[0].first == "w");
  CHECK(ok.tensors[0].second.data()[0] == 1.0f);
  fs::remove_all(dir);
}

TEST_CASE("eval refuses a checkpoint holding NaN unless --allow-nonfinite", "[errors][cli]") {
  const std::string dir = fresh_dir("nonfinite");
  fs::create_directories(dir);
  NamedTensors state = create_model("resnet8", {})->state_dict();
  for (auto& [name, t] : state) {
    if (name == "fc.weight") t.mutable_data()[17] = std::numeric_limits<float>::quiet_NaN();
    if (name == "fc.bias") t.mutable_data()[3] = std::numeric_limits<float>::infinity();
  }
  const std::string path = dir + "/nan.safetensors";
  save_safetensors(path, state, {{"model", "resnet8"}});
  auto [s1, o1] = run_cli("eval --checkpoint " + path + " --limit 100 --data " + data_dir());
  CHECK(s1 == 1);
  CHECK_THAT(o1, Catch::Contains(path) && Catch::Contains("\"fc.weight\"") &&
                     Catch::Contains("1 NaN or infinite value(s) of 640 (first at index 17)") &&
                     Catch::Contains("--allow-nonfinite"));
  auto [s2, o2] =
      run_cli("eval --checkpoint " + path + " --limit 100 --allow-nonfinite --data " + data_dir());
  CHECK(s2 == 0);
  CHECK_THAT(o2, Catch::Contains("accuracy"));
  fs::remove_all(dir);
}

TEST_CASE("numeric flags refuse NaN, infinity and out-of-range values, stating the range",
          "[errors][cli]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train --threads 0", "--threads: must be an integer from 1 to 256, got 0"},
      {"train --momentum nan", "--momentum: must be a number >= 0 and < 1, got nan"},
      {"train --gamma nan", "--gamma: must be a number > 0 and <= 10, got nan"},
      {"train --lr inf", "--lr: must be a number > 0 and <= 1000, got inf"},
      {"train --lr -0.1", "--lr: must be a number > 0"},
      {"train --weight-decay 1e999", "--weight-decay: must be a number >= 0 and <= 1, got 1e999"},
      {"train --label-smoothing 1", "--label-smoothing: must be a number >= 0 and < 1, got 1"},
      {"train --milestones 3 nan", "--milestones: must be a number >= 0 and <= 100000, got nan"},
      {"train --epochs 1000000000000000000000000000000",
       "--epochs: must be an integer from 1 to 100000, got 100000000000000000000000..."},
      {"train --batch-size 1", "--batch-size: must be an integer from 2 to 65536, got 1"},
      {"train --seed -1", "--seed: must be an integer from 0 to"},
      {"eval --checkpoint x --batch-size 0",
       "--batch-size: must be an integer from 1 to 65536, got 0"},
      {"bench --steps 2.5", "--steps: must be an integer from 1 to 1000000, got 2.5"},
      {"experiment bn-only --epochs nan", "--epochs: must be an integer from 1 to 100000, got nan"},
      {"train --model resnet1234567890123 --data .", "unknown model \"resnet1234567890123\""},
      {"train --model resnet20_100000 --data .", "width from 1 to 512, got depth 20, width 100000"},
      {"train --data . --bn-sync exact --bn-group-size 4",
       "--bn-group-size and --bn-sync exact exclude each other"},
  };
  for (const auto& [args, expected] : cases) {
    INFO(args);
    auto [status, out] = run_cli(args);
    CHECK(status == 1);  // CLI11's own codes (105 ...) are mapped to 1 like every other error
    CHECK_THAT(out, Catch::Contains(expected));
    CHECK_THAT(out, !Catch::Contains("exception") && !Catch::Contains("stoll") &&
                        !Catch::Contains("bad_alloc"));
  }
}

TEST_CASE("resume refuses training state that does not fit, naming the file and the entry",
          "[errors][train]") {
  train::TrainOptions c = minidl::testing::small_options("resume_bad", 1, 128);
  c.limit_test = 100;
  minidl::testing::fit(c);
  const std::string dir = c.out;
  const std::string state = dir + "/train_state.safetensors";
  const std::string good_state = read_file(state);
  const std::string good_config = read_file(dir + "/config.json");
  auto resume = [&] { return minidl::testing::resume(dir, 2); };

  SECTION("an optimizer buffer of the wrong size") {
    Checkpoint ck = load_safetensors(state);
    for (auto& [name, t] : ck.tensors) {
      if (name == "optimizer.fc.weight.momentum_buffer") t = Tensor({7});
    }
    save_safetensors(state, ck.tensors, ck.metadata);
    CHECK_THROWS_WITH(resume(),
                      Catch::Contains(state) &&
                          Catch::Contains("\"optimizer.fc.weight.momentum_buffer\" of shape [7]") &&
                          Catch::Contains("needs [640]"));
  }
  SECTION("a missing optimizer buffer") {
    Checkpoint ck = load_safetensors(state);
    NamedTensors kept;
    for (auto& [name, t] : ck.tensors) {
      if (name != "optimizer.fc.bias.momentum_buffer") kept.emplace_back(name, t);
    }
    kept.emplace_back("optimizer.fc.bias.exp_avg", Tensor({10}));
    save_safetensors(state, kept, ck.metadata);
    CHECK_THROWS_WITH(
        resume(), Catch::Contains(state) &&
                      Catch::Contains("no optimizer buffer \"optimizer.fc.bias.momentum_buffer\""));
  }
  SECTION("another optimizer in config.json") {
    std::string j = good_config;
    j.replace(j.find("\"sgd\""), 5, "\"adam\"");
    write_file(dir + "/config.json", j);
    CHECK_THROWS_WITH(resume(), Catch::Contains(state) && Catch::Contains("optimizer adam"));
  }
  SECTION("another model's tensors") {
    Checkpoint ck = load_safetensors(state);
    for (auto& [name, t] : ck.tensors) {
      if (name == "model.fc.weight") t = Tensor({10, 3});
    }
    save_safetensors(state, ck.tensors, ck.metadata);
    CHECK_THROWS_WITH(resume(), Catch::Contains(state) && Catch::Contains("fc.weight"));
  }
  SECTION("a changed --limit-train (steps per epoch)") {
    std::string j = good_config;
    j.replace(j.find("\"limit_train\": 128"), 18, "\"limit_train\": 256");
    write_file(dir + "/config.json", j);
    CHECK_THROWS_WITH(resume(), Catch::Contains(state) && Catch::Contains("batches per epoch"));
  }
  SECTION("metadata that is not a number") {
    Checkpoint ck = load_safetensors(state);
    ck.metadata["epochs_done"] = "1e3";
    save_safetensors(state, ck.tensors, ck.metadata);
    CHECK_THROWS_WITH(
        resume(),
        Catch::Contains(state) &&
            Catch::Contains("\"epochs_done\" must be a non-negative integer, got \"1e3\""));
  }
  SECTION("config.json of the wrong types, not JSON, or missing") {
    std::string j = good_config;
    j.replace(j.find("\"lr\":"), 5, "\"lr\": \"fast\", \"x\":");
    write_file(dir + "/config.json", j);
    CHECK_THROWS_WITH(resume(), Catch::Contains(dir + "/config.json") &&
                                    Catch::Contains("key \"lr\" must be a number, got \"fast\""));
    write_file(dir + "/config.json", "{\"lr\": 0.1,");
    CHECK_THROWS_WITH(resume(),
                      Catch::Contains(dir + "/config.json") && Catch::Contains("not valid JSON"));
    write_file(dir + "/config.json", std::string(50, '[') + std::string(50, ']'));
    CHECK_THROWS_WITH(resume(), Catch::Contains("nests arrays or objects"));
    fs::remove(dir + "/config.json");
    CHECK_THROWS_WITH(resume(), Catch::Contains(dir + "/config.json"));
  }
  SECTION("a run whose first epoch never finished") {
    fs::remove(state);
    CHECK_THROWS_WITH(resume(), Catch::Contains(state) && Catch::Contains("does not exist"));
  }
  // Refusing changed nothing else: with the good state and config back, the run continues.
  write_file(state, good_state);
  write_file(dir + "/config.json", good_config);
  CHECK(resume().epochs_run == 1);
  fs::remove_all(dir);
}

TEST_CASE("a run diverging in its first epoch says that no checkpoint was written",
          "[errors][train]") {
  train::TrainOptions c = minidl::testing::small_options("diverge_first", 1, 256);
  c.limit_test = 100;
  c.lr = 1e30f;
  c.warmup_epochs = 0;
  c.schedule = optim::ScheduleKind::kConstant;
  CHECK_THROWS_WITH(minidl::testing::fit(c), Catch::Contains("training diverged") &&
                                                 Catch::Contains("epoch 1") &&
                                                 Catch::Contains("No checkpoint was written"));
  CHECK_FALSE(fs::exists(c.out + "/model.safetensors"));
  fs::remove_all(c.out);
}

TEST_CASE("SIGKILL at random moments: --resume continues bit-identically or refuses clearly",
          "[errors][train][slow]") {
  const std::string base = fresh_dir("kill");
  fs::create_directories(base);
  const std::string flags =
      " --model resnet8 --epochs 3 --batch-size 64 --limit-train 256 "
      "--limit-test 100 --lr 0.05 --threads 1 --data " +
      data_dir();
  // The uninterrupted run.
  auto [s0, o0] = run_cli("train" + flags + " --out " + base + "/whole");
  REQUIRE(s0 == 0);
  const auto reference = tensors_of(base + "/whole/model.safetensors");
  const std::string reference_metrics = read_file(base + "/whole/metrics.csv");
  // How long an epoch takes (training and evaluation), from the reference's metrics.csv.
  double epoch_ms = 0.0;
  {
    std::istringstream m(reference_metrics);
    std::string line;
    std::getline(m, line);
    int n = 0;
    while (std::getline(m, line)) {
      const std::vector<std::string> f = minidl::testing::csv_fields(line);
      epoch_ms += 1000.0 * std::stod(f.at(6));
      ++n;
    }
    epoch_ms /= n;
  }
  // Each kill: wait until the run has finished `done` epochs (0: until it has started, when
  // run.lock appears), then a random part of one more epoch's time, so the kills land all
  // over the run, in the middle of epochs and while files are written.
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> epochs_before(0, 2);
  std::uniform_real_distribution<double> within(0.0, 1.2 * epoch_ms);
  auto rows_in = [](const std::string& path) {
    std::ifstream in(path);
    int n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n - 1;  // the header
  };
  int continued = 0, refused = 0, finished_before_kill = 0;
  for (int run = 0; run < 20; ++run) {
    const std::string out = base + "/run" + std::to_string(run);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const std::string args = "train" + flags + " --out " + out;
      freopen("/dev/null", "w", stdout);
      freopen("/dev/null", "w", stderr);
      execl("/bin/sh", "sh", "-c", ("exec " + std::string(MINIDL_BINARY) + " " + args).c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    const int done = epochs_before(rng);
    const double extra_ms = within(rng);
    int status = 0;
    bool exited = false;
    for (int waited = 0; waited < 60000; waited += 2) {  // at most a minute
      if (done == 0 ? fs::exists(out + "/run.lock") : rows_in(out + "/metrics.csv") >= done) break;
      if ((exited = waitpid(pid, &status, WNOHANG) == pid)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!exited) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(extra_ms));
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++finished_before_kill;
    }
    INFO("run " << run);
    // Every checkpoint left behind can be read by eval (or there is none).
    if (fs::exists(out + "/model.safetensors")) {
      auto [es, eo] = run_cli("eval --checkpoint " + out +
                              "/model.safetensors --limit 100 --data " + data_dir());
      CHECK(es == 0);
    }
    if (!fs::exists(out + "/train_state.safetensors")) {
      // Killed before the first epoch finished: --resume refuses, naming the missing file.
      auto [rs, ro] = run_cli("train --resume " + out + " --threads 1 --data " + data_dir());
      CHECK(rs == 1);
      if (fs::exists(out + "/config.json"))
        CHECK_THAT(ro, Catch::Contains("train_state.safetensors"));
      ++refused;
      continue;
    }
    auto [rs, ro] = run_cli("train --resume " + out + " --threads 1 --data " + data_dir());
    CHECK(rs == 0);
    if (rs != 0) {
      UNSCOPED_INFO(ro);
      continue;
    }
    ++continued;
    CHECK(tensors_of(out + "/model.safetensors") == reference);
    // The metrics agree with the uninterrupted run in every column but the timings.
    std::istringstream a(read_file(out + "/metrics.csv")), b(reference_metrics);
    std::string la, lb;
    int rows = 0;
    while (std::getline(a, la) && std::getline(b, lb)) {
      ++rows;
      auto cut = [](const std::string& l) {  // the first six columns: epoch .. lr
        size_t p = 0;
        for (int k = 0; k < 6 && p != std::string::npos; ++k) p = l.find(',', p + 1);
        return l.substr(0, p);
      };
      CHECK(cut(la) == cut(lb));
    }
    CHECK(rows == 4);
  }
  INFO("continued " << continued << ", refused " << refused << ", finished "
                    << finished_before_kill);
  CHECK(continued + refused == 20);
  CHECK(continued >= 5);  // the kills are spread over the run, most after the first epoch
  fs::remove_all(base);
}
