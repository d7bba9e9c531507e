// `experiment batch-size` (experiments/batch_size.hpp).
#include "experiments/batch_size.hpp"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/file_io.hpp"
#include "data/cifar10.hpp"
#include "experiments/bn_only.hpp"
#include "layers/batch_norm.hpp"
#include "train/loop.hpp"
#include "train/run_dir.hpp"

namespace minidl::experiments {

namespace fs = std::filesystem;

std::vector<BatchSizeCell> batch_size_cells(const BatchSizeConfig& e) {
  if (e.epochs < 1)
    throw std::invalid_argument("epochs must be >= 1, got " + std::to_string(e.epochs));
  if (e.batch_size < 2)
    throw std::invalid_argument("batch_size must be >= 2, got " + std::to_string(e.batch_size));
  if (e.stop_after == 0 || e.stop_after < -1)
    throw std::invalid_argument("stop_after must be >= 1, got " + std::to_string(e.stop_after));
  if (e.groups.empty()) throw std::invalid_argument("groups: give at least one group size");
  for (int64_t g : e.groups) {
    if (g < 2 || g > e.batch_size || e.batch_size % g != 0) {
      throw std::invalid_argument("groups must divide the batch size " +
                                  std::to_string(e.batch_size) + " and be >= 2, got " +
                                  std::to_string(g));
    }
  }
  train::TrainOptions base = train::preset(train::Recipe::kDefault);
  base.data = e.data;
  base.model = e.model;
  base.epochs = static_cast<double>(e.epochs);
  base.batch_size = e.batch_size;
  base.seed = e.seed;
  base.threads = e.threads;
  base.limit_train = e.limit_train;
  base.limit_test = e.limit_test;
  std::vector<BatchSizeCell> cells;
  for (const char* kind : {"bn", "renorm"}) {
    for (int64_t g : e.groups) {
      BatchSizeCell c{std::string(kind) + "-" + std::to_string(g), kind, g, base};
      c.options.bn_group_size = g == e.batch_size ? 0 : g;
      c.options.bn_renorm = c.norm == "renorm";
      cells.push_back(c);
    }
  }
  BatchSizeCell gn{"gn", "gn", 0, base};
  gn.options.norm = NormKind::kGroup;
  gn.options.gn_groups = e.gn_groups;
  BatchSizeCell ln{"ln", "ln", 0, base};
  ln.options.norm = NormKind::kLayer;
  cells.push_back(gn);
  cells.push_back(ln);
  for (BatchSizeCell& c : cells) c.options.out = e.out + "/" + c.name;
  return cells;
}

namespace {

/// A finished cell, read back from its run directory (and one extra test pass).
struct CellResult {
  const BatchSizeCell* cell = nullptr;
  double train_accuracy = 0.0;   ///< last epoch, augmented batches, train mode
  double test_eval = 0.0;        ///< eval mode: running statistics
  double test_train_mode = 0.0;  ///< train mode: statistics of groups of G test images
  double wall_seconds = 0.0;
};

CellResult summarize(const BatchSizeCell& c, const BatchSizeConfig& e, const data::Dataset& test) {
  CellResult r;
  r.cell = &c;
  for (const train::MetricsRow& m : train::read_metrics(c.options.out + "/metrics.csv")) {
    r.train_accuracy = m.train_accuracy;
    r.test_eval = m.test_accuracy.value_or(0.0);
    r.wall_seconds += m.seconds;
  }
  std::shared_ptr<Module> model = train::load_model(c.options.out + "/model.safetensors");
  const data::Normalization norm = data::normalization_named(c.options.normalize);
  for (BatchNorm* bn : model->modules_of<BatchNorm>()) {
    bn->group_size = c.options.bn_group_size;
    if (c.options.bn_renorm) bn->renorm = train::renorm_at(c.options, 1, 1);  // the maxima
  }
  const train::EvalResult t =
      train::evaluate(*model, test, e.batch_size, train::BnStats::kBatch, norm);
  r.test_train_mode = t.count ? static_cast<double>(t.correct) / t.count : 0.0;
  return r;
}

std::string write_tables(const BatchSizeConfig& e, const std::vector<CellResult>& rows) {
  std::ostringstream csv, md;
  csv << "cell,norm,group,train_accuracy,test_accuracy_eval_mode,test_accuracy_train_mode,"
         "gap_train_minus_eval,wall_seconds\n";
  md << "# Normalization against the images that share statistics: " << e.model << ", " << e.epochs
     << " epochs of the default recipe, global batch " << e.batch_size << ", seed " << e.seed
     << "\n\n| cell | images sharing statistics | test, eval mode | test, train mode "
     << "| train - eval | train accuracy | wall time |\n|---|---:|---:|---:|---:|---:|---:|\n";
  double total = 0.0;
  for (const CellResult& r : rows) {
    const BatchSizeCell& c = *r.cell;
    const std::string group = c.group > 0 ? std::to_string(c.group) : "-";
    char line[512];
    std::snprintf(line, sizeof line, "%s,%s,%s,%.4f,%.4f,%.4f,%.4f,%.1f\n", c.name.c_str(),
                  c.norm.c_str(), c.group > 0 ? group.c_str() : "", r.train_accuracy, r.test_eval,
                  r.test_train_mode, r.test_train_mode - r.test_eval, r.wall_seconds);
    csv << line;
    std::snprintf(line, sizeof line, "| %s | %s | %.2f%% | %.2f%% | %+.2f | %.2f%% | %.0f min |\n",
                  c.name.c_str(), group.c_str(), 100 * r.test_eval, 100 * r.test_train_mode,
                  100 * (r.test_train_mode - r.test_eval), 100 * r.train_accuracy,
                  r.wall_seconds / 60);
    md << line;
    total += r.wall_seconds;
  }
  char tail[160];
  std::snprintf(tail, sizeof tail, "\nTotal wall time of the epochs: %.1f h.\n", total / 3600);
  md << tail
     << "\nEval mode normalizes with the running statistics (what `minidl eval` and deployment "
        "use); train mode with the statistics of each group of G test images (batches of "
     << e.batch_size << "), as training did. `bn-" << e.batch_size
     << "` is BatchNorm over the whole batch, which is also what synchronized BatchNorm "
        "computes over "
     << e.batch_size
     << "/G processes of G images each. `renorm-G`: Batch Renormalization "
        "(Ioffe 2017), r_max 3 and d_max 5 after the default ramp. `gn`: GroupNorm with "
     << e.gn_groups
     << " groups; `ln`: LayerNorm as Wu & He define it (GroupNorm with one group). Neither "
        "depends on the batch: one run each. Plot: `batch_size.png`.\n";
  write_file_atomic(e.out + "/results.csv", csv.str());
  write_file_atomic(e.out + "/results.md", md.str());
  return md.str();
}

}  // namespace

BatchSizeReport run_batch_size(const BatchSizeConfig& e) {
  const std::vector<BatchSizeCell> cells = batch_size_cells(e);
  fs::create_directories(e.out);
  int64_t budget = e.stop_after;
  BatchSizeReport report;
  for (const BatchSizeCell& c : cells) {
    int64_t done = train::checkpoint_epoch(c.options.out);
    if (done > 0 && !e.resume) {
      throw std::runtime_error("\"" + c.options.out + "\" already holds a run (" +
                               std::to_string(done) +
                               " epochs); continue it (resume), or use another output folder");
    }
    if (done > 0) check_same_config(c.options.out, c.options);
    if (done >= e.epochs) continue;
    if (budget == 0) return report;
    if (e.on_cell_start) e.on_cell_start(c.name, done);
    train::Trainer trainer(c.options, e.callbacks);
    const train::RunResult r = trainer.fit(done > 0, budget);
    if (budget > 0) budget -= r.epochs_run;
    if (train::checkpoint_epoch(c.options.out) < e.epochs) return report;
  }
  const data::Dataset test = data::load_cifar10(e.data, false, e.limit_test);
  std::vector<CellResult> rows;
  for (const BatchSizeCell& c : cells) rows.push_back(summarize(c, e, test));
  report.finished = true;
  report.markdown = write_tables(e, rows);
  return report;
}

}  // namespace minidl::experiments
