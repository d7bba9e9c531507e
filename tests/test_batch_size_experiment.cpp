// `experiment batch-size` (experiments/batch_size.hpp): its cells, its refusals, and a tiny run
// split by stop_after and resumed whose table agrees with its checkpoints.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "experiments/batch_size.hpp"
#include "test_util.hpp"

using namespace minidl;
namespace fs = std::filesystem;

TEST_CASE("experiment batch-size: its cells and their training options", "[experiment]") {
  experiments::BatchSizeConfig e;
  e.data = "unused";
  e.out = "OUT";
  const std::vector<experiments::BatchSizeCell> cells = experiments::batch_size_cells(e);
  std::vector<std::string> names;
  for (const auto& c : cells) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"bn-2", "bn-4", "bn-8", "bn-16", "bn-32", "bn-128",
                                          "renorm-2", "renorm-4", "renorm-8", "renorm-16",
                                          "renorm-32", "renorm-128", "gn", "ln"});
  for (const auto& c : cells) {
    INFO(c.name);
    CHECK(c.options.batch_size == 128);  // the global batch never changes
    CHECK(c.options.out == "OUT/" + c.name);
    CHECK(c.options.bn_renorm == (c.norm == "renorm"));
    if (c.norm == "bn" || c.norm == "renorm") {
      CHECK(c.options.norm == NormKind::kBatch);
      CHECK(c.options.bn_group_size == (c.group == 128 ? 0 : c.group));
    } else {
      CHECK(c.options.bn_group_size == 0);
      CHECK(c.options.norm == (c.norm == "gn" ? NormKind::kGroup : NormKind::kLayer));
    }
    CHECK_NOTHROW(train::validate(c.options));
  }
  CHECK(cells[12].options.gn_groups == 8);

  experiments::BatchSizeConfig bad = e;
  bad.groups = {3};
  CHECK_THROWS_WITH(experiments::batch_size_cells(bad), Catch::Contains("groups must divide"));
  bad = e;
  bad.epochs = 0;
  CHECK_THROWS_WITH(experiments::batch_size_cells(bad), Catch::Contains("epochs must be >= 1"));
}

TEST_CASE("experiment batch-size split by stop_after: a table that matches its checkpoints",
          "[experiment][slow]") {
  experiments::BatchSizeConfig e;
  e.data = minidl::testing::data_dir();
  e.out = minidl::testing::fresh_dir("batch_size_experiment");
  e.model = "resnet8";
  e.epochs = 1;
  e.batch_size = 8;
  e.groups = {2, 8};
  e.limit_train = 64;
  e.limit_test = 48;
  e.threads = 1;
  e.stop_after = 3;  // 6 cells of 1 epoch: stops after 3
  CHECK_FALSE(experiments::run_batch_size(e).finished);
  CHECK_FALSE(fs::exists(e.out + "/results.csv"));
  CHECK_THROWS_WITH(experiments::run_batch_size(e), Catch::Contains("already holds a run"));
  e.resume = true;
  e.stop_after = -1;
  const experiments::BatchSizeReport r = experiments::run_batch_size(e);
  REQUIRE(r.finished);
  std::ifstream csv(e.out + "/results.csv");
  std::string line;
  std::getline(csv, line);
  CHECK(line ==
        "cell,norm,group,train_accuracy,test_accuracy_eval_mode,test_accuracy_train_mode,"
        "gap_train_minus_eval,wall_seconds");
  std::map<std::string, std::vector<std::string>> rows;
  while (std::getline(csv, line)) {
    const std::vector<std::string> f = minidl::testing::csv_fields(line);
    REQUIRE(f.size() == 8);
    rows[f[0]] = f;
  }
  REQUIRE(rows.size() == 6);
  for (const auto& [cell, f] : rows) {
    INFO(cell);
    // The eval-mode accuracy is what `minidl eval` gives on the cell's checkpoint.
    app::EvalConfig ev;
    ev.checkpoint = e.out + "/" + cell + "/model.safetensors";
    ev.data = e.data;
    ev.limit = e.limit_test;
    ev.json = true;
    CHECK(std::abs(app::run_eval(ev) - std::stod(f[4])) < 1e-4);
    CHECK(std::abs(std::stod(f[6]) - (std::stod(f[5]) - std::stod(f[4]))) < 2e-4);
  }
  // GroupNorm and LayerNorm have no batch statistics: train mode is eval mode.
  CHECK(rows["gn"][5] == rows["gn"][4]);
  CHECK(rows["ln"][6] == "0.0000");
}
