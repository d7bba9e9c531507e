// Tests of the data module: CIFAR-10 reader, normalization, augmentation, DataLoader,
// load_image. The real data set is found through the environment variable MINIDL_DATA (the
// cifar-10-batches-bin folder); CMake sets it for ctest. If it is unset, the tests that need
// the data FAIL (they never skip silently).
#include <catch2/catch.hpp>
#include <thread>
#include <future>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>
#include <unistd.h>

#include "data/cifar10.hpp"
#include "data/image.hpp"
#include "data/loader.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace minidl;
using namespace minidl::data;
using minidl::testing::indexed_dataset;

namespace {

std::string data_dir() {
  const char* dir = std::getenv("MINIDL_DATA");
  if (dir == nullptr || *dir == '\0') {
    FAIL(
        "The environment variable MINIDL_DATA is not set. Set it to the folder holding the "
        "CIFAR-10 .bin files, e.g. MINIDL_DATA=/work/shared/data/cifar-10-batches-bin (ctest "
        "sets it to ${CMAKE_SOURCE_DIR}/../shared/data/cifar-10-batches-bin); "
        "scripts/get_cifar10.sh downloads the data.");
  }
  return dir;
}

std::string data_file(const std::string& name) { return (fs::path(data_dir()) / name).string(); }

/// The 50,000 training images, read once for all tests.
const Dataset& train_set() {
  static const Dataset ds = load_cifar10(data_dir(), /*train=*/true);
  return ds;
}

/// A per-test temporary directory, removed at the end of the scope.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() /
           ("minidl_test_data_" + tag + "_" + std::to_string(static_cast<long>(::getpid())));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

/// The normalization formula, written independently of the library.
float norm_value(int byte, int c, const Normalization& n = {}) {
  return (static_cast<float>(byte) / 255.0f - n.mean[c]) / n.std[c];
}

std::vector<Batch> run_epoch(DataLoader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> batches;
  Batch b;
  while (loader.next(b)) batches.push_back(b);
  return batches;
}

bool same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].labels != b[i].labels) return false;
    if (a[i].images.shape() != b[i].images.shape()) return false;
    if (!std::equal(a[i].images.data(), a[i].images.data() + a[i].images.numel(),
                    b[i].images.data()))
      return false;
  }
  return true;
}

std::vector<int32_t> all_labels(const std::vector<Batch>& batches) {
  std::vector<int32_t> out;
  for (const auto& b : batches) out.insert(out.end(), b.labels.begin(), b.labels.end());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reader

TEST_CASE("cifar10 class names", "[data]") {
  const auto& names = cifar10_class_names();
  REQUIRE(names.size() == 10);
  CHECK(names[0] == "airplane");
  CHECK(names[1] == "automobile");
  CHECK(names[3] == "cat");
  CHECK(names[9] == "truck");
  CHECK(names == std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer", "dog",
                                          "frog", "horse", "ship", "truck"});
}

TEST_CASE("read_cifar10_file reads data_batch_1 and test_batch", "[data]") {
  const Dataset train1 = read_cifar10_file(data_file("data_batch_1.bin"));
  REQUIRE(train1.size() == 10000);
  REQUIRE(train1.images.size() == 10000u * 3072u);
  const std::vector<int32_t> first_train(train1.labels.begin(), train1.labels.begin() + 10);
  CHECK(first_train == std::vector<int32_t>{6, 9, 9, 4, 1, 1, 2, 7, 8, 3});
  const std::vector<int> red(train1.images.begin(), train1.images.begin() + 10);
  CHECK(red == std::vector<int>{59, 43, 50, 68, 98, 119, 139, 145, 149, 149});

  const Dataset test = read_cifar10_file(data_file("test_batch.bin"));
  REQUIRE(test.size() == 10000);
  const std::vector<int32_t> first_test(test.labels.begin(), test.labels.begin() + 10);
  CHECK(first_test == std::vector<int32_t>{3, 8, 8, 0, 6, 6, 1, 6, 3, 1});
}

TEST_CASE("load_cifar10 train: 50,000 images, batches in order, class counts", "[data]") {
  const Dataset& train = train_set();
  REQUIRE(train.size() == 50000);
  REQUIRE(train.images.size() == 50000u * 3072u);
  std::array<int, 10> counts{};
  for (int32_t l : train.labels) {
    REQUIRE(l >= 0);
    REQUIRE(l <= 9);
    ++counts[static_cast<size_t>(l)];
  }
  for (int c = 0; c < 10; ++c) CHECK(counts[static_cast<size_t>(c)] == 5000);

  // Concatenated in the order data_batch_1 .. data_batch_5.
  const std::vector<int32_t> first(train.labels.begin(), train.labels.begin() + 10);
  CHECK(first == std::vector<int32_t>{6, 9, 9, 4, 1, 1, 2, 7, 8, 3});
  const Dataset b3 = read_cifar10_file(data_file("data_batch_3.bin"));
  CHECK(std::equal(b3.labels.begin(), b3.labels.end(), train.labels.begin() + 20000));
  CHECK(std::equal(b3.images.begin(), b3.images.end(), train.images.begin() + 20000 * 3072));
}

TEST_CASE("load_cifar10 test: 10,000 images, 1,000 per class", "[data]") {
  const Dataset test = load_cifar10(data_dir(), /*train=*/false);
  REQUIRE(test.size() == 10000);
  std::array<int, 10> counts{};
  for (int32_t l : test.labels) ++counts[static_cast<size_t>(l)];
  for (int c = 0; c < 10; ++c) CHECK(counts[static_cast<size_t>(c)] == 1000);
  const std::vector<int32_t> first(test.labels.begin(), test.labels.begin() + 10);
  CHECK(first == std::vector<int32_t>{3, 8, 8, 0, 6, 6, 1, 6, 3, 1});
}

TEST_CASE("training-set channel means and stds", "[data]") {
  const Dataset& train = train_set();
  // Histograms per channel, then exact integer sums.
  std::array<std::array<uint64_t, 256>, 3> hist{};
  for (int64_t i = 0; i < train.size(); ++i) {
    const uint8_t* img = train.images.data() + i * kImageBytes;
    for (int c = 0; c < 3; ++c) {
      const uint8_t* plane = img + c * kPlaneBytes;
      for (int64_t p = 0; p < kPlaneBytes; ++p) ++hist[static_cast<size_t>(c)][plane[p]];
    }
  }
  const std::array<double, 3> want_mean{0.4914, 0.4822, 0.4465};
  const std::array<double, 3> want_std{0.2470, 0.2435, 0.2616};
  for (size_t c = 0; c < 3; ++c) {
    double n = 0, s = 0, s2 = 0;
    for (int v = 0; v < 256; ++v) {
      const double k = static_cast<double>(hist[c][static_cast<size_t>(v)]);
      const double x = v / 255.0;
      n += k;
      s += k * x;
      s2 += k * x * x;
    }
    CHECK(n == 50000.0 * 1024.0);
    const double mean = s / n;
    const double sd = std::sqrt(s2 / n - mean * mean);
    INFO("channel " << c << " mean " << mean << " std " << sd);
    CHECK(std::abs(mean - want_mean[c]) < 1e-3);
    CHECK(std::abs(sd - want_std[c]) < 1e-3);
  }
}

TEST_CASE("load_cifar10 limit keeps a prefix", "[data]") {
  const Dataset& train = train_set();
  const Dataset part = load_cifar10(data_dir(), true, 12345);  // crosses into data_batch_2
  REQUIRE(part.size() == 12345);
  REQUIRE(part.images.size() == 12345u * 3072u);
  CHECK(std::equal(part.labels.begin(), part.labels.end(), train.labels.begin()));
  CHECK(std::equal(part.images.begin(), part.images.end(), train.images.begin()));

  CHECK_THROWS_AS(load_cifar10(data_dir(), true, 0), std::invalid_argument);  // selects nothing
  CHECK(load_cifar10(data_dir(), false, 7).size() == 7);
  CHECK(load_cifar10(data_dir(), false, 20000).size() == 10000);
}

TEST_CASE("read errors name the file, the size, the record and the label", "[data]") {
  TempDir tmp("errors");

  SECTION("missing file") {
    const std::string path = tmp.file("no_such_batch.bin");
    try {
      read_cifar10_file(path);
      FAIL("no exception for a missing file");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(path) != std::string::npos);
      CHECK(msg.find("No such file") != std::string::npos);
    }
  }

  SECTION("truncated file") {
    const std::string path = tmp.file("truncated.bin");
    std::vector<uint8_t> bytes(3073 * 2 + 100, 0);
    write_bytes(path, bytes);
    try {
      read_cifar10_file(path);
      FAIL("no exception for a truncated file");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(path) != std::string::npos);
      CHECK(msg.find("6246") != std::string::npos);  // its size
      CHECK(msg.find("3073") != std::string::npos);  // the record size
      CHECK(msg.find("9219") != std::string::npos);  // the next valid size
    }
  }

  SECTION("label out of range") {
    const std::string path = tmp.file("bad_label.bin");
    std::vector<uint8_t> bytes(3073 * 3, 7);
    bytes[0] = 3;
    bytes[3073] = 11;  // record 1
    bytes[2 * 3073] = 2;
    write_bytes(path, bytes);
    try {
      read_cifar10_file(path);
      FAIL("no exception for label 11");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(path) != std::string::npos);
      CHECK(msg.find("record 1") != std::string::npos);
      CHECK(msg.find("label 11") != std::string::npos);
    }
  }

  SECTION("valid small file") {
    const std::string path = tmp.file("small.bin");
    std::vector<uint8_t> bytes(3073 * 2);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i % 251);
    bytes[0] = 9;
    bytes[3073] = 0;
    write_bytes(path, bytes);
    const Dataset ds = read_cifar10_file(path);
    REQUIRE(ds.size() == 2);
    CHECK(ds.labels == std::vector<int32_t>{9, 0});
    CHECK(ds.images[0] == 1);
    CHECK(ds.images[3071] == bytes[3072]);
    CHECK(ds.images[3072] == bytes[3074]);
  }

  SECTION("empty file is an error naming it") {
    const std::string path = tmp.file("empty.bin");
    write_bytes(path, {});
    try {
      read_cifar10_file(path);
      FAIL("no exception for an empty file");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(path) != std::string::npos);
      CHECK(msg.find("is empty (0 bytes)") != std::string::npos);
    }
  }

  SECTION("missing directory names it and says how to get the data") {
    const std::string dir = tmp.file("not_there");
    try {
      load_cifar10(dir, true);
      FAIL("no exception for a missing directory");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(dir) != std::string::npos);
      CHECK(msg.find("scripts/get_cifar10.sh") != std::string::npos);
    }
  }

  SECTION("directory without the batch files names the missing file") {
    try {
      load_cifar10(tmp.path.string(), false);
      FAIL("no exception for a directory without test_batch.bin");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("test_batch.bin") != std::string::npos);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Normalization and to_tensor

TEST_CASE("to_tensor normalizes (byte/255 - mean) / std", "[data]") {
  const Dataset& train = train_set();
  const Tensor t = to_tensor(train, 0, 2);
  REQUIRE(t.shape() == Shape{2, 3, 32, 32});
  const float* x = t.data();
  // Image 0, pixel (0, 0): red 59.
  CHECK(x[0] == Approx((59.0 / 255.0 - 0.4914) / 0.2470).epsilon(1e-5));
  CHECK(x[0] == Approx(-1.0527).margin(1e-3));
  const int g = train.images[1024];
  const int b = train.images[2048];
  CHECK(x[1024] == Approx((g / 255.0 - 0.4822) / 0.2435).epsilon(1e-5));
  CHECK(x[2048] == Approx((b / 255.0 - 0.4465) / 0.2616).epsilon(1e-5));
  // Every value matches the formula exactly (same float arithmetic).
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int c = static_cast<int>((i / kPlaneBytes) % 3);
    REQUIRE(x[i] == norm_value(train.images[static_cast<size_t>(i)], c));
  }

  // A custom normalization and an offset range.
  Normalization n;
  n.mean = {0.5f, 0.5f, 0.5f};
  n.std = {0.5f, 0.5f, 0.5f};
  const Tensor u = to_tensor(train, 3, 1, n);
  REQUIRE(u.shape() == Shape{1, 3, 32, 32});
  CHECK(u.data()[5] == Approx(train.images[3 * 3072 + 5] / 255.0 * 2.0 - 1.0).margin(1e-6));

  CHECK(to_tensor(train, 50000, 0).shape() == Shape{0, 3, 32, 32});
  CHECK_THROWS_AS(to_tensor(train, 49999, 2), std::out_of_range);
  CHECK_THROWS_AS(to_tensor(train, -1, 1), std::out_of_range);
  CHECK_THROWS_AS(to_tensor(train, 0, -1), std::out_of_range);
}

TEST_CASE("normalization_named: cifar10, imagenet (open_lth's values), errors name the flag",
          "[data]") {
  const Normalization c = normalization_named("cifar10");
  CHECK(c.mean == Normalization{}.mean);
  CHECK(c.std == Normalization{}.std);
  const Normalization i = normalization_named("imagenet");
  CHECK(i.mean == std::array<float, 3>{0.485f, 0.456f, 0.406f});
  CHECK(i.std == std::array<float, 3>{0.229f, 0.224f, 0.225f});
  // Image 0, pixel (0, 0), red 59 under ImageNet's red mean and std.
  const Tensor t = to_tensor(train_set(), 0, 1, i);
  CHECK(t.data()[0] == Approx((59.0 / 255.0 - 0.485) / 0.229).epsilon(1e-6));
  // The library names the option (normalize); the CLI turns it into --normalize.
  CHECK_THROWS_WITH(normalization_named("ImageNet"), Catch::StartsWith("normalize:") &&
                                                         Catch::Contains("cifar10 or imagenet") &&
                                                         Catch::Contains("\"ImageNet\""));
  CHECK_THROWS_WITH(normalization_named("x", "checkpoint \"m.safetensors\""),
                    Catch::StartsWith("checkpoint \"m.safetensors\""));
}

// ---------------------------------------------------------------------------------------------
// Augmentation

TEST_CASE("augment_image: identity, flip, crop with zero padding", "[data]") {
  const Dataset ds = indexed_dataset(1, 7);
  const uint8_t* src = ds.images.data();
  const Normalization norm;
  std::vector<float> plain(3072), out(3072);
  normalize_image(src, plain.data(), norm);

  auto at = [](const std::vector<float>& v, int c, int y, int x) {
    return v[static_cast<size_t>(c * 1024 + y * 32 + x)];
  };

  SECTION("identity (crop 4,4 and no flip) equals normalize_image") {
    augment_image(src, out.data(), AugmentParams{4, 4, false}, norm);
    CHECK(out == plain);
  }

  SECTION("flip mirrors every row") {
    augment_image(src, out.data(), AugmentParams{4, 4, true}, norm);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) REQUIRE(at(out, c, y, x) == at(plain, c, y, 31 - x));
    // Flipping twice restores the image (check on a flip of the flipped bytes).
    std::vector<uint8_t> mirrored(3072);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x)
          mirrored[static_cast<size_t>(c * 1024 + y * 32 + x)] = src[c * 1024 + y * 32 + 31 - x];
    std::vector<float> mirrored_norm(3072);
    normalize_image(mirrored.data(), mirrored_norm.data(), norm);
    CHECK(out == mirrored_norm);
  }

  SECTION("crop 0,0 shifts the image down-right; padding is (0 - mean) / std") {
    augment_image(src, out.data(), AugmentParams{0, 0, false}, norm);
    for (int c = 0; c < 3; ++c) {
      const float pad = norm_value(0, c);
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
          if (y < 4 || x < 4)
            REQUIRE(at(out, c, y, x) == pad);
          else
            REQUIRE(at(out, c, y, x) == at(plain, c, y - 4, x - 4));
        }
    }
    CHECK(at(out, 0, 0, 0) == Approx(-0.4914f / 0.2470f));
  }

  SECTION("crop 8,2 with flip") {
    augment_image(src, out.data(), AugmentParams{8, 2, true}, norm);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
          const int sy = y + 8 - 4;
          const int sx = (31 - x) + 2 - 4;
          const bool inside = sy >= 0 && sy < 32 && sx >= 0 && sx < 32;
          REQUIRE(at(out, c, y, x) == (inside ? at(plain, c, sy, sx) : norm_value(0, c)));
        }
  }

  SECTION("bad crop offsets throw") {
    CHECK_THROWS_AS(augment_image(src, out.data(), AugmentParams{9, 0, false}),
                    std::invalid_argument);
    CHECK_THROWS_AS(augment_image(src, out.data(), AugmentParams{0, -1, false}),
                    std::invalid_argument);
  }
}

TEST_CASE("splitmix64 and uniform_below are the specified functions", "[data]") {
  // Reference outputs of splitmix64 (Vigna's splitmix64.c, state 0 then its first increments).
  CHECK(splitmix64(0) == 0xE220A8397B1DCDAFULL);
  CHECK(splitmix64(0x9E3779B97F4A7C15ULL) == 0x6E789E6AA1B965F4ULL);

  std::mt19937_64 gen(123);
  std::array<int, 9> counts{};
  for (int i = 0; i < 90000; ++i) {
    const uint64_t v = uniform_below(gen, 9);
    REQUIRE(v < 9);
    ++counts[v];
  }
  for (int c : counts) CHECK(std::abs(c - 10000) < 500);
  CHECK(uniform_below(gen, 1) == 0);
  CHECK_THROWS_AS(uniform_below(gen, 0), std::invalid_argument);
}

TEST_CASE("make_epoch_plan: permutation, determinism, augmentation draws", "[data]") {
  LoaderOptions opt;
  opt.shuffle = true;
  opt.augment = true;
  opt.seed = 42;
  const int64_t n = 9000;
  const EpochPlan p0 = make_epoch_plan(n, opt, 0);
  REQUIRE(p0.order.size() == static_cast<size_t>(n));
  REQUIRE(p0.augment.size() == static_cast<size_t>(n));
  std::vector<int64_t> sorted = p0.order;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < n; ++i) REQUIRE(sorted[static_cast<size_t>(i)] == i);

  const EpochPlan again = make_epoch_plan(n, opt, 0);
  CHECK(again.order == p0.order);
  const EpochPlan p1 = make_epoch_plan(n, opt, 1);
  CHECK(p1.order != p0.order);
  LoaderOptions other = opt;
  other.seed = 43;
  CHECK(make_epoch_plan(n, other, 0).order != p0.order);

  // Crop offsets cover 0..8 about uniformly, flips about half.
  std::array<int, 9> ys{}, xs{};
  int flips = 0;
  for (size_t k = 0; k < p0.augment.size(); ++k) {
    const auto& a = p0.augment[k];
    REQUIRE(a.crop_y >= 0);
    REQUIRE(a.crop_y <= 8);
    REQUIRE(a.crop_x >= 0);
    REQUIRE(a.crop_x <= 8);
    ++ys[static_cast<size_t>(a.crop_y)];
    ++xs[static_cast<size_t>(a.crop_x)];
    flips += a.flip ? 1 : 0;
    REQUIRE(a.crop_y == again.augment[k].crop_y);
    REQUIRE(a.crop_x == again.augment[k].crop_x);
    REQUIRE(a.flip == again.augment[k].flip);
  }
  for (int i = 0; i < 9; ++i) {
    CHECK(std::abs(ys[static_cast<size_t>(i)] - 1000) < 150);
    CHECK(std::abs(xs[static_cast<size_t>(i)] - 1000) < 150);
  }
  CHECK(std::abs(flips - 4500) < 250);

  // Without shuffle the order is the identity; without augment there are no draws.
  LoaderOptions plain;
  const EpochPlan id = make_epoch_plan(5, plain, 3);
  CHECK(id.order == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(id.augment.empty());

  // Golden values: the plan must not change between platforms or releases (mt19937_64 and
  // the draws are fully specified).
  LoaderOptions g;
  g.shuffle = true;
  g.seed = 42;
  const EpochPlan golden = make_epoch_plan(10, g, 0);
  CHECK(golden.order == std::vector<int64_t>{2, 0, 4, 7, 8, 3, 5, 1, 9, 6});
}

// ---------------------------------------------------------------------------------------------
// DataLoader

TEST_CASE("DataLoader without shuffle returns the dataset in order", "[data]") {
  const Dataset ds = indexed_dataset(100);
  LoaderOptions opt;
  opt.batch_size = 32;
  DataLoader loader(ds, opt);
  CHECK(loader.num_batches() == 4);
  const auto batches = run_epoch(loader, 0);
  REQUIRE(batches.size() == 4);
  CHECK(batches[0].images.shape() == Shape{32, 3, 32, 32});
  CHECK(batches[3].images.shape() == Shape{4, 3, 32, 32});  // partial last batch
  CHECK(batches[3].labels == std::vector<int32_t>{96, 97, 98, 99});
  for (size_t b = 0; b < batches.size(); ++b) {
    const int64_t begin = static_cast<int64_t>(b) * 32;
    const Tensor want = to_tensor(ds, begin, batches[b].images.size(0));
    CHECK(std::equal(want.data(), want.data() + want.numel(), batches[b].images.data()));
  }
  Batch extra;
  CHECK_FALSE(loader.next(extra));
  CHECK_FALSE(loader.next(extra));
}

TEST_CASE("DataLoader with shuffle covers every index exactly once per epoch", "[data]") {
  const Dataset ds = indexed_dataset(1000);
  LoaderOptions opt;
  opt.batch_size = 64;
  opt.shuffle = true;
  opt.seed = 7;
  DataLoader loader(ds, opt);
  REQUIRE(loader.num_batches() == 16);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto batches = run_epoch(loader, epoch);
    REQUIRE(batches.size() == 16);
    CHECK(batches.back().labels.size() == 1000u - 15u * 64u);
    std::vector<int32_t> seen = all_labels(batches);
    REQUIRE(seen.size() == 1000);
    // Images travel with their labels.
    for (const auto& b : batches) {
      for (size_t k = 0; k < b.labels.size(); ++k) {
        const Tensor want = to_tensor(ds, b.labels[k], 1);
        REQUIRE(std::equal(want.data(), want.data() + 3072,
                           b.images.data() + static_cast<int64_t>(k) * 3072));
      }
    }
    // The order is the plan's.
    const EpochPlan plan = make_epoch_plan(1000, opt, epoch);
    CHECK(std::equal(seen.begin(), seen.end(), plan.order.begin()));
    std::sort(seen.begin(), seen.end());
    for (int32_t i = 0; i < 1000; ++i) REQUIRE(seen[static_cast<size_t>(i)] == i);
  }
}

TEST_CASE("DataLoader: same seed and epoch give identical batches, other epochs differ", "[data]") {
  const Dataset ds = indexed_dataset(500);
  LoaderOptions opt;
  opt.batch_size = 50;
  opt.shuffle = true;
  opt.seed = 1234;
  DataLoader a(ds, opt), b(ds, opt);
  const auto a0 = run_epoch(a, 0);
  const auto b0 = run_epoch(b, 0);
  CHECK(same_batches(a0, b0));
  const auto a1 = run_epoch(a, 1);
  CHECK(all_labels(a1) != all_labels(a0));
  // Replaying an epoch reproduces it.
  CHECK(same_batches(run_epoch(b, 1), a1));
  CHECK(same_batches(run_epoch(b, 0), a0));
  // Another seed gives another order.
  LoaderOptions o2 = opt;
  o2.seed = 1235;
  DataLoader c(ds, o2);
  CHECK(all_labels(run_epoch(c, 0)) != all_labels(a0));
}

TEST_CASE("DataLoader drop_last and argument errors", "[data]") {
  const Dataset ds = indexed_dataset(100);
  LoaderOptions opt;
  opt.batch_size = 32;
  opt.drop_last = true;
  DataLoader loader(ds, opt);
  CHECK(loader.num_batches() == 3);
  const auto batches = run_epoch(loader, 0);
  REQUIRE(batches.size() == 3);
  for (const auto& b : batches) CHECK(b.images.size(0) == 32);

  LoaderOptions bad;
  bad.batch_size = 0;
  CHECK_THROWS_AS(DataLoader(ds, bad), std::invalid_argument);

  DataLoader unstarted(ds, LoaderOptions{});
  Batch b;
  CHECK_THROWS_AS(unstarted.next(b), std::logic_error);

  // batch larger than the dataset: one partial batch, or none with drop_last.
  LoaderOptions big;
  big.batch_size = 1000;
  DataLoader one(ds, big);
  CHECK(one.num_batches() == 1);
  CHECK(run_epoch(one, 0).size() == 1);
  big.drop_last = true;
  DataLoader none(ds, big);
  CHECK(none.num_batches() == 0);
  CHECK(run_epoch(none, 0).empty());

  const Dataset empty;
  DataLoader zero(empty, LoaderOptions{});
  CHECK(run_epoch(zero, 0).empty());
}

TEST_CASE("DataLoader: restarting mid-epoch and destroying mid-epoch do not hang", "[data]") {
  const Dataset ds = indexed_dataset(300);
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.shuffle = true;
  opt.augment = true;
  opt.seed = 99;
  std::vector<Batch> full;
  {
    DataLoader ref(ds, opt);
    full = run_epoch(ref, 2);
  }
  // The scenario runs on its own thread (no Catch assertions there: they are not thread-safe).
  // If it has not finished within 60 s, it is deadlocked: the test fails and the process
  // aborts, since a deadlocked thread can be neither joined nor abandoned safely.
  struct Outcome {
    bool first_two = false, same_after_restart = false, after_epoch_3 = false;
  };
  std::packaged_task<Outcome()> scenario([&] {
    Outcome o;
    {
      DataLoader loader(ds, opt);
      loader.start_epoch(2);
      Batch b;
      o.first_two = loader.next(b) && loader.next(b);
      // The worker is now blocked on a full queue; restart the same epoch.
      loader.start_epoch(2);
      std::vector<Batch> again;
      while (loader.next(b)) again.push_back(b);
      o.same_after_restart = same_batches(again, full);
      loader.start_epoch(3);
      o.after_epoch_3 = loader.next(b);
      loader.start_epoch(4);  // restart without consuming
      loader.start_epoch(5);
    }  // destroyed with a running worker and a full queue
    {
      DataLoader never_consumed(ds, opt);
      never_consumed.start_epoch(0);
    }
    return o;
  });
  std::future<Outcome> done = scenario.get_future();
  std::thread runner(std::move(scenario));
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::fprintf(stderr, "DataLoader scenario still running after 60 s: deadlock\n");
    std::fflush(stderr);
    std::abort();  // ctest reports the test as failed
  }
  runner.join();
  const Outcome o = done.get();
  CHECK(o.first_two);
  CHECK(o.same_after_restart);
  CHECK(o.after_epoch_3);
}

TEST_CASE("DataLoader with augmentation: shape, determinism, matches augment_image", "[data]") {
  const Dataset ds = indexed_dataset(200);
  LoaderOptions opt;
  opt.batch_size = 64;
  opt.shuffle = true;
  opt.augment = true;
  opt.seed = 5;
  DataLoader a(ds, opt), b(ds, opt);
  const auto a0 = run_epoch(a, 0);
  REQUIRE(a0.size() == 4);
  CHECK(a0[0].images.shape() == Shape{64, 3, 32, 32});
  CHECK(a0[3].images.shape() == Shape{8, 3, 32, 32});
  CHECK(same_batches(a0, run_epoch(b, 0)));
  CHECK_FALSE(same_batches(a0, run_epoch(b, 1)));

  // The augmentation differs from the plain images, and each image is augment_image of its
  // plan entry.
  LoaderOptions noaug = opt;
  noaug.augment = false;
  DataLoader c(ds, noaug);
  const auto c0 = run_epoch(c, 0);
  CHECK(all_labels(c0) == all_labels(a0));  // augmentation does not change the order
  CHECK_FALSE(same_batches(a0, c0));

  const EpochPlan plan = make_epoch_plan(ds.size(), opt, 0);
  std::vector<float> want(3072);
  int64_t pos = 0;
  for (const auto& batch : a0) {
    for (size_t k = 0; k < batch.labels.size(); ++k, ++pos) {
      const int64_t index = plan.order[static_cast<size_t>(pos)];
      REQUIRE(batch.labels[k] == index);
      augment_image(ds.images.data() + index * 3072, want.data(),
                    plan.augment[static_cast<size_t>(pos)]);
      REQUIRE(std::equal(want.begin(), want.end(),
                         batch.images.data() + static_cast<int64_t>(k) * 3072));
    }
  }
}

TEST_CASE("DataLoader on the real training set", "[data]") {
  const Dataset& train = train_set();
  LoaderOptions opt;
  opt.batch_size = 128;
  opt.shuffle = true;
  opt.augment = true;
  opt.seed = 0;
  DataLoader loader(train, opt);
  CHECK(loader.num_batches() == 391);
  loader.start_epoch(0);
  Batch b;
  int64_t batches = 0, images = 0;
  std::array<int64_t, 10> counts{};
  while (loader.next(b)) {
    ++batches;
    images += b.images.size(0);
    for (int32_t l : b.labels) ++counts[static_cast<size_t>(l)];
  }
  CHECK(batches == 391);
  CHECK(images == 50000);
  for (auto c : counts) CHECK(c == 5000);
}

// ---------------------------------------------------------------------------------------------
// load_image

TEST_CASE("load_image reads PNG/BMP, converts to RGB, resizes to 32x32", "[data]") {
  TempDir tmp("image");
  const Normalization norm;

  SECTION("32x32 RGB PNG: exact normalized values, CHW order") {
    std::vector<uint8_t> hwc(32 * 32 * 3);
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) {
        uint8_t* p = &hwc[static_cast<size_t>((y * 32 + x) * 3)];
        p[0] = static_cast<uint8_t>(x * 8);
        p[1] = static_cast<uint8_t>(y * 8);
        p[2] = static_cast<uint8_t>((x + y) * 3);
      }
    const std::string path = tmp.file("rgb.png");
    REQUIRE(stbi_write_png(path.c_str(), 32, 32, 3, hwc.data(), 32 * 3) != 0);
    const Tensor t = load_image(path);
    REQUIRE(t.shape() == Shape{1, 3, 32, 32});
    const float* d = t.data();
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x)
          REQUIRE(d[c * 1024 + y * 32 + x] ==
                  norm_value(hwc[static_cast<size_t>((y * 32 + x) * 3 + c)], c));
    CHECK(d[0 * 1024 + 5 * 32 + 3] == Approx((24 / 255.0 - 0.4914) / 0.2470));  // red = x*8
    CHECK(d[1 * 1024 + 5 * 32 + 3] == Approx((40 / 255.0 - 0.4822) / 0.2435));  // green = y*8

    // Custom normalization is honoured.
    Normalization half;
    half.mean = {0.5f, 0.5f, 0.5f};
    half.std = {0.5f, 0.5f, 0.5f};
    const Tensor u = load_image(path, half);
    CHECK(u.data()[31] == Approx(248 / 255.0 * 2 - 1));
  }

  SECTION("64x48 image is resized to 32x32") {
    const int w = 64, h = 48;
    std::vector<uint8_t> hwc(static_cast<size_t>(w * h * 3));
    for (int i = 0; i < w * h; ++i) {
      hwc[static_cast<size_t>(i * 3 + 0)] = 200;
      hwc[static_cast<size_t>(i * 3 + 1)] = 100;
      hwc[static_cast<size_t>(i * 3 + 2)] = 30;
    }
    // A left/right split in the green channel to check orientation survives the resize.
    for (int y = 0; y < h; ++y)
      for (int x = w / 2; x < w; ++x) hwc[static_cast<size_t>((y * w + x) * 3 + 1)] = 250;
    const std::string path = tmp.file("wide.png");
    REQUIRE(stbi_write_png(path.c_str(), w, h, 3, hwc.data(), w * 3) != 0);
    const Tensor t = load_image(path);
    REQUIRE(t.shape() == Shape{1, 3, 32, 32});
    const float* d = t.data();
    const float tol = 1.5f / 255.0f / 0.2435f;  // one step of rounding
    for (int i = 0; i < 1024; ++i) {
      REQUIRE(d[i] == Approx(norm_value(200, 0)).margin(tol));
      REQUIRE(d[2048 + i] == Approx(norm_value(30, 2)).margin(tol));
    }
    CHECK(d[1024 + 10 * 32 + 2] == Approx(norm_value(100, 1)).margin(tol));   // left: 100
    CHECK(d[1024 + 10 * 32 + 29] == Approx(norm_value(250, 1)).margin(tol));  // right: 250
  }

  SECTION("grayscale and RGBA are converted to RGB; BMP works") {
    std::vector<uint8_t> gray(32 * 32);
    for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i % 256);
    const std::string gpath = tmp.file("gray.png");
    REQUIRE(stbi_write_png(gpath.c_str(), 32, 32, 1, gray.data(), 32) != 0);
    const Tensor g = load_image(gpath);
    REQUIRE(g.shape() == Shape{1, 3, 32, 32});
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 1024; ++i)
        REQUIRE(g.data()[c * 1024 + i] == norm_value(gray[static_cast<size_t>(i)], c));

    std::vector<uint8_t> rgba(32 * 32 * 4);
    for (int i = 0; i < 1024; ++i) {
      rgba[static_cast<size_t>(i * 4 + 0)] = 10;
      rgba[static_cast<size_t>(i * 4 + 1)] = 20;
      rgba[static_cast<size_t>(i * 4 + 2)] = 30;
      rgba[static_cast<size_t>(i * 4 + 3)] = static_cast<uint8_t>(i % 256);  // alpha dropped
    }
    const std::string apath = tmp.file("rgba.png");
    REQUIRE(stbi_write_png(apath.c_str(), 32, 32, 4, rgba.data(), 32 * 4) != 0);
    const Tensor a = load_image(apath);
    CHECK(a.data()[7] == norm_value(10, 0));
    CHECK(a.data()[1024 + 7] == norm_value(20, 1));
    CHECK(a.data()[2048 + 7] == norm_value(30, 2));

    std::vector<uint8_t> rgb(32 * 32 * 3, 0);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>((i * 7) % 256);
    const std::string bpath = tmp.file("img.bmp");
    REQUIRE(stbi_write_bmp(bpath.c_str(), 32, 32, 3, rgb.data()) != 0);
    const Tensor bm = load_image(bpath);
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 1024; ++i)
        REQUIRE(bm.data()[c * 1024 + i] == norm_value(rgb[static_cast<size_t>(i * 3 + c)], c));
  }

  SECTION("JPEG of a flat colour decodes to about that colour") {
    std::vector<uint8_t> rgb(40 * 40 * 3);
    for (int i = 0; i < 40 * 40; ++i) {
      rgb[static_cast<size_t>(i * 3 + 0)] = 180;
      rgb[static_cast<size_t>(i * 3 + 1)] = 60;
      rgb[static_cast<size_t>(i * 3 + 2)] = 90;
    }
    const std::string path = tmp.file("flat.jpg");
    REQUIRE(stbi_write_jpg(path.c_str(), 40, 40, 3, rgb.data(), 95) != 0);
    const Tensor t = load_image(path);
    REQUIRE(t.shape() == Shape{1, 3, 32, 32});
    const float tol = 4.0f / 255.0f / 0.2435f;
    CHECK(t.data()[100] == Approx(norm_value(180, 0)).margin(tol));
    CHECK(t.data()[1024 + 100] == Approx(norm_value(60, 1)).margin(tol));
    CHECK(t.data()[2048 + 100] == Approx(norm_value(90, 2)).margin(tol));
  }

  SECTION("errors name the file, the OS's or stb's reason") {
    const std::string missing = tmp.file("missing.png");
    try {
      load_image(missing);
      FAIL("no exception for a missing image");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(missing) != std::string::npos);
      CHECK(msg.find("No such file or directory") != std::string::npos);
    }
    const std::string garbage = tmp.file("garbage.png");
    write_bytes(garbage, std::vector<uint8_t>(100, 0x42));
    try {
      load_image(garbage);
      FAIL("no exception for a file that is not an image");
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(garbage) != std::string::npos);
      CHECK(msg.find("expected PNG, JPEG or BMP") != std::string::npos);
    }
  }
}
