// minidl tests — shared helpers: where the data is, scratch folders, a small training config.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <utility>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "core/safetensors.hpp"
#include "train/trainer.hpp"
#include "data/cifar10.hpp"

namespace minidl::testing {

/// The CIFAR-10 folder from $MINIDL_DATA (CMake sets it for ctest); fails the test if unset.
inline std::string data_dir() {
  const char* d = std::getenv("MINIDL_DATA");
  if (!d || !*d) FAIL("MINIDL_DATA is not set: point it at cifar-10-batches-bin");
  return d;
}

/// The comma-separated fields of one line of a CSV file minidl wrote (no quoting: minidl's
/// CSVs hold numbers and names without commas).
inline std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ss(line);
  for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
  return f;
}

/// An empty scratch folder under the system's temporary directory, unique to this process
/// (ctest -j runs test cases in parallel processes).
inline std::string fresh_dir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("minidl_test_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(p);
  return p.string();
}

/// A synthetic dataset of n random images whose label is the image's index (so batches can be
/// traced back to dataset indices; the loader does not check labels).
inline data::Dataset indexed_dataset(int64_t n, uint32_t seed = 1) {
  data::Dataset ds;
  ds.images.resize(static_cast<size_t>(n * data::kImageBytes));
  ds.labels.resize(static_cast<size_t>(n));
  std::mt19937 gen(seed);
  for (auto& b : ds.images) b = static_cast<uint8_t>(gen() & 0xFF);
  for (int64_t i = 0; i < n; ++i) ds.labels[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return ds;
}

/// Runs the minidl binary (MINIDL_BINARY, set by CMake) with `args` through the shell; returns
/// Runs `minidl ARGS` (in folder `dir` when not empty) and returns (exit status, stdout +
/// stderr).
inline std::pair<int, std::string> run_cli(const std::string& args, const std::string& dir = "") {
  const std::string cmd = (dir.empty() ? std::string() : "cd '" + dir + "' && exec ") +
                          MINIDL_BINARY + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe);
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// The lines of `text` (without their newlines).
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// A quick seeded run: resnet8, batch 64, the first `train_images` training and 1,000 test
/// images, into a fresh folder `name`.
inline train::TrainOptions small_options(const std::string& name, int64_t epochs,
                                         int64_t train_images) {
  train::TrainOptions c;
  c.data = data_dir();
  c.model = "resnet8";
  c.epochs = static_cast<double>(epochs);
  c.batch_size = 64;
  c.lr = 0.05f;
  c.limit_train = train_images;
  c.limit_test = 1000;
  c.seed = 5;
  c.out = fresh_dir(name);
  return c;
}

/// Trains `o` with the Trainer (at most `stop_after` epochs when > 0).
inline train::RunResult fit(const train::TrainOptions& o, int64_t stop_after = -1) {
  return train::Trainer(o).fit(false, stop_after);
}

/// Continues the run in `dir` from its config.json, with `threads` and, when > 0, `epochs`.
inline train::RunResult resume(const std::string& dir, double epochs = 0, int threads = 2) {
  train::TrainOptions o = train::read_config(dir + "/config.json");
  if (epochs > 0) o.epochs = epochs;
  o.threads = threads;
  o.out = dir;
  o.data = data_dir();
  return train::Trainer(o).fit(true);
}

/// A safetensors file's bytes: the 8-byte little-endian header length, `header`, then `data`.
inline std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  std::string out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

/// Writes `bytes` to `path`, replacing it.
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

/// The bytes of `path` ("" when unreadable).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The tensors of a checkpoint, by name, as values (bit-for-bit comparisons).
inline std::map<std::string, std::vector<float>> tensors_of(const std::string& path) {
  std::map<std::string, std::vector<float>> out;
  for (auto& [name, t] : load_safetensors(path).tensors)
    out[name].assign(t.vec().begin(), t.vec().end());
  return out;
}

}  // namespace minidl::testing
