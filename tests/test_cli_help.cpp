// minidl tests — the command line as a person reads it: help texts (types and defaults once, lines
// of at most 100 columns, each experiment's own flags), the same names for the same things,
// "did you mean" for unknown flags, config.json's numbers as typed, and the start-up and epoch
// lines of `train`.
#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "test_util.hpp"
#include "train/run_dir.hpp"

using namespace minidl;
using minidl::testing::data_dir;
using minidl::testing::fresh_dir;
using minidl::testing::read_file;
using minidl::testing::run_cli;

using minidl::testing::lines_of;

namespace {

/// The flags `minidl <command> --help` lists (first names).
std::vector<std::string> help_flags(const std::string& help) {
  std::vector<std::string> flags;
  const std::regex flag(R"(^  (?:-\w, )?(--[a-z][a-z0-9-]*))");
  for (const std::string& line : lines_of(help)) {
    std::smatch m;
    if (std::regex_search(line, m, flag)) flags.push_back(m[1]);
  }
  return flags;
}

/// `text` with every run of spaces and newlines as one space (a help's wrapped lines joined).
std::string flat(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n';
    if (!(space && !out.empty() && out.back() == ' ')) out += space ? ' ' : c;
  }
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}
}  // namespace

TEST_CASE("help: each flag's type and default once, as sentences, in 100 columns", "[cli][help]") {
  for (const char* command :
       {"", "train", "eval", "predict", "bench", "bn-stats", "recalibrate-bn", "plot", "experiment",
        "experiment bn-only", "experiment bn-only-sweep", "experiment landscape",
        "experiment covariate-shift", "experiment batch-size"}) {
    INFO(command);
    auto [status, help] = run_cli(std::string(command) + " --help");
    INFO(help);
    CHECK(status == 0);
    for (const std::string& line : lines_of(help)) {
      INFO(line);
      CHECK(line.size() <= 100);
    }
    // CLI11's own renderings of types and defaults are gone.
    CHECK_THAT(help, !Catch::Contains("FLOAT") && !Catch::Contains("BOOLEAN") &&
                         !Catch::Contains("TEXT") && !Catch::Contains("UINT") &&
                         !Catch::Contains("INT in [") && !Catch::Contains("=0") &&
                         !Catch::Contains("=1") && !Catch::Contains("; default "));
  }
  auto [s, train_help] = run_cli("train --help");
  const std::string train = flat(train_help);
  CHECK_THAT(train, Catch::Contains(" --lr NUMBER The peak learning rate. A number > 0 and <= "
                                    "1000. Default: 0.1. --"));
  CHECK_THAT(train, Catch::Contains(" --nesterov true|false Whether SGD's momentum is Nesterov's. "
                                    "Default: true. --"));
  CHECK_THAT(train, Catch::Contains(" --threads INT OpenMP threads. An integer from 1 to 256. "
                                    "Default: 2. --"));
  CHECK_THAT(train, Catch::Contains(" --optimizer NAME The optimizer. sgd: SGD with momentum; "
                                    "adam: Adam, L2 weight decay; adamw: Adam, decoupled weight "
                                    "decay. Default: sgd. --"));
  CHECK_THAT(train, Catch::Contains(" --epochs INT Epochs to train (airbench94: 9.9). An integer "
                                    "from 1 to 100000. Default: 30. --"));
  // --recipe lists only what train takes (frankle2021 is experiment bn-only's).
  CHECK_THAT(train, Catch::Contains("default: resnet20") && !Catch::Contains("frankle2021"));
}

TEST_CASE("help: each experiment lists its own flags, with its own defaults", "[cli][help]") {
  auto flags_of = [](const std::string& name) {
    auto [s, help] = run_cli("experiment " + name + " --help");
    CHECK(s == 0);
    return std::make_pair(help_flags(help), flat(help));
  };
  const auto [bn, bn_help] = flags_of("bn-only");
  CHECK(has(bn, "--variants"));
  CHECK(has(bn, "--recipe"));
  CHECK(has(bn, "--model"));
  CHECK_FALSE(has(bn, "--models"));
  CHECK_FALSE(has(bn, "--lr"));
  CHECK_FALSE(has(bn, "--etas"));
  CHECK_FALSE(has(bn, "--layer"));
  CHECK_THAT(bn_help, Catch::Contains("Default: resnet14.") && Catch::Contains("Default: 15."));
  const auto [sweep, sweep_help] = flags_of("bn-only-sweep");
  CHECK(has(sweep, "--models"));
  CHECK_FALSE(has(sweep, "--model"));
  const auto [land, land_help] = flags_of("landscape");
  CHECK(has(land, "--etas"));
  CHECK(has(land, "--lr"));
  CHECK_FALSE(has(land, "--layer"));
  CHECK_FALSE(has(land, "--resume"));
  CHECK_THAT(land_help, Catch::Contains("Default: vgg11_w4.") && Catch::Contains("Default: 20.") &&
                            Catch::Contains("Default: 0.5 1 1.5 2 2.5 3 3.5 4."));
  const auto [shift, shift_help] = flags_of("covariate-shift");
  CHECK(has(shift, "--layer"));
  CHECK_FALSE(has(shift, "--etas"));
  const auto [batch, batch_help] = flags_of("batch-size");
  CHECK(has(batch, "--resume"));
  CHECK_FALSE(has(batch, "--variants"));
  CHECK_THAT(batch_help, Catch::Contains("Default: resnet20.") && Catch::Contains("Default: 5."));
  // The same learning-rate range as train's.
  CHECK_THAT(land_help, Catch::Contains("A number > 0 and <= 1000."));
  auto [s, list] = run_cli("experiment --help");
  CHECK_THAT(list, Catch::Contains("  bn-only ") && Catch::Contains("  batch-size "));
}

TEST_CASE("the same name for the same thing: --limit-test and --limit-train everywhere",
          "[cli][help]") {
  for (const char* command : {"train", "eval", "experiment bn-only", "experiment landscape"}) {
    auto [s, help] = run_cli(std::string(command) + " --help");
    INFO(command);
    CHECK(has(help_flags(help), "--limit-test"));
    CHECK(has(help_flags(help), "--limit-train"));
  }
  auto [s1, eval] = run_cli("eval --help");
  CHECK_FALSE(has(help_flags(eval), "--limit"));
  CHECK_FALSE(has(help_flags(eval), "--recalibrate-limit"));
  CHECK_THAT(flat(eval),
             Catch::Contains("Its old name --limit is still accepted, until the next release.") &&
                 Catch::Contains("Its old name --recalibrate-limit is still accepted"));
  auto [s2, recal] = run_cli("recalibrate-bn --help");
  CHECK(has(help_flags(recal), "--limit-train"));
  CHECK_THAT(flat(recal), Catch::Contains("Its old name --limit is still accepted"));
  // Both spellings give the same evaluation.
  train::TrainOptions c = minidl::testing::small_options("cli_help_limit", 1, 128);
  c.limit_test = 100;
  minidl::testing::fit(c);
  const std::string ck = " --checkpoint " + c.out + "/model.safetensors --data " + data_dir();
  auto [s3, new_name] = run_cli("eval --json --limit-test 50" + ck);
  auto [s4, old_name] = run_cli("eval --json --limit 50" + ck);
  REQUIRE(s3 == 0);
  REQUIRE(s4 == 0);
  CHECK(nlohmann::json::parse(new_name)["count"] == 50);
  CHECK(new_name == old_name);
  std::filesystem::remove_all(c.out);
}

TEST_CASE("an unknown flag is named with the nearest ones", "[cli][help]") {
  const std::pair<const char*, const char*> cases[] = {
      {"train --learning-rate 0.1", "unknown flag --learning-rate for train (did you mean --lr?)"},
      {"train --lr 0.1 --epoch 3", "unknown flag --epoch for train (did you mean --epochs?)"},
      {"train --limit 5",
       "unknown flag --limit for train (did you mean --limit-train or "
       "--limit-test?)"},
      {"train --bacth-size 64", "unknown flag --bacth-size for train (did you mean --batch-size?)"},
      {"eval --checkpont x", "unknown flag --checkpont for eval (did you mean --checkpoint?)"},
      {"train --frobnicate", "unknown flag --frobnicate for train\n"},
      {"experiment bn-only --lr 0.1", "--lr is for landscape and covariate-shift, not bn-only"},
      {"experiment landscape --variant bn",
       "unknown flag --variant for experiment landscape (did you mean --variants?)"},
      {"experiment bn-onyl",
       "unknown experiment \"bn-onyl\" (did you mean bn-only?); the "
       "experiments: bn-only, bn-only-sweep, landscape, covariate-shift, "
       "batch-size"},
      {"experiment",
       "experiment: name one of bn-only, bn-only-sweep, landscape, "
       "covariate-shift or batch-size"},
      {"train --lr", "--lr needs a value (a number > 0 and <= 1000)"},
      {"train --renorm-ramp 0.1", "--renorm-ramp needs 2 values (a number >= 0 and <= 1), got 1"},
      {"train 0.1", "unexpected argument \"0.1\" for train (each value goes after its flag"},
  };
  for (const auto& [args, message] : cases) {
    INFO(args);
    auto [status, out] = run_cli(args);
    CHECK(status == 1);
    CHECK_THAT(out, Catch::StartsWith(std::string("minidl: error: ") + message));
    CHECK(std::count(out.begin(), out.end(), '\n') == 2);
    CHECK_THAT(out, Catch::Contains("Run minidl "));
  }
  CLI::App app{"minidl"};
  const std::vector<app::Command> commands = app::add_commands(app);
  CLI::App* train = app.get_subcommand("train");
  CHECK(app::nearest_flags(*train, "--momentun") == std::vector<std::string>{"--momentum"});
  CHECK(app::nearest_flags(*train, "--wd") == std::vector<std::string>{"--weight-decay"});
  CHECK(app::nearest_flags(*train, "--xyzzy").empty());
}

TEST_CASE("counts in words: 1 epoch, 2 epochs", "[cli]") {
  CHECK(app::count_text(1, "epoch") == "1 epoch");
  CHECK(app::count_text(2, "epoch") == "2 epochs");
  CHECK(app::count_text(9.9, "epoch") == "9.9 epochs");
  CHECK(app::count_text(1, "batch", "batches") == "1 batch");
  CHECK(app::count_text(1200, "batch", "batches") == "1,200 batches");
}

TEST_CASE("config.json holds the numbers as typed, and --resume still compares them",
          "[cli][train]") {
  CHECK(train::shortest_decimal(0.1f) == 0.1);
  CHECK(train::shortest_decimal(5e-4f) == 5e-4);
  CHECK(train::shortest_decimal(0.05833f) == 0.05833);
  CHECK(static_cast<float>(train::shortest_decimal(1.0f / 3)) == 1.0f / 3);
  const std::string dir = fresh_dir("cli_help_config");
  const std::string flags =
      " --model resnet8 --epochs 2 --batch-size 64 --limit-train 128 "
      "--limit-test 50 --threads 1 --lr 0.05 --momentum 0.85 "
      "--label-smoothing 0.15 --weight-decay 3e-4 --data " +
      data_dir();
  auto [s0, o0] = run_cli("train" + flags + " --stop-after 1 --out " + dir);
  INFO(o0);
  REQUIRE(s0 == 0);
  const std::string config = read_file(dir + "/config.json");
  INFO(config);
  CHECK_THAT(config, Catch::Contains("\"lr\": 0.05,") && Catch::Contains("\"momentum\": 0.85,") &&
                         Catch::Contains("\"label_smoothing\": 0.15,") &&
                         Catch::Contains("\"weight_decay\": 0.0003\n"));
  // The same flags are the same settings; another value is refused naming both as typed.
  auto [s1, o1] =
      run_cli("train --resume " + dir + " --lr 0.05 --momentum 0.85 --data " + data_dir());
  INFO(o1);
  CHECK(s1 == 0);
  auto [s2, o2] = run_cli("train --resume " + dir + " --lr 0.06 --data " + data_dir());
  CHECK(s2 == 1);
  CHECK_THAT(o2, Catch::Contains("--lr 0.06: the run in " + dir + " was trained with lr 0.05"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("train's start-up lines fit in 100 columns and its epoch lines line up", "[cli][train]") {
  const std::string dir = fresh_dir("cli_help_lines");
  auto [s, out] = run_cli(
      "train --model resnet8 --epochs 2 --batch-size 64 --limit-train 128 "
      "--limit-test 50 --threads 1 --data " +
      data_dir() + " --out " + dir);
  INFO(out);
  REQUIRE(s == 0);
  std::vector<std::string> lines = lines_of(out);
  REQUIRE(lines.size() >= 7);  // the run folder, 3 start-up lines, 2 epochs, done
  CHECK(lines[0] == "run folder: " + dir);
  lines.erase(lines.begin());
  CHECK_THAT(lines[0], Catch::StartsWith("minidl train: resnet8, ") &&
                           Catch::EndsWith(" trainable (--train-only all), 1 thread"));
  CHECK_THAT(lines[1], Catch::StartsWith("  data: 128 train / 50 test images; 2 epochs of 2 "
                                         "batches of 64 images"));
  CHECK_THAT(lines[2], Catch::StartsWith("  sgd, lr 0.1, schedule onecycle; BN statistics: "
                                         "batch; run folder "));
  CHECK(lines[0].size() <= 100);
  CHECK(lines[1].size() <= 100);
  CHECK(lines[2].size() - dir.size() <= 70);
  const std::regex epoch(R"(epoch [12]/2  train loss \d\.\d{4} acc +\d+\.\d\d%  test loss )"
                         R"((\d\.\d{4}|     -) acc +(\d+\.\d\d%|     - )  lr \d\.\d{3}e[-+]\d\d  )"
                         R"( *\d+\.\ds   *\d+ img/s)");
  CHECK(std::regex_match(lines[3], epoch));
  CHECK(std::regex_match(lines[4], epoch));
  CHECK(lines[3].size() == lines[4].size());
  CHECK(lines[3].find(" lr ") == lines[4].find(" lr "));
  CHECK_THAT(lines[5],
             Catch::StartsWith("done: test accuracy ") && Catch::Contains(" after 2 epochs in "));
  std::filesystem::remove_all(dir);
}
