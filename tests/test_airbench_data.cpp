// Tests of airbench94's data pipeline pieces (Jordan, arXiv 2404.00498): the
// kTranslateAlternatingFlip augmentation of the DataLoader (alternating flip, translation with
// reflect padding) and the test-time-augmentation views hflip and crop_reflect. No data files
// are needed: the images are synthetic.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "data/loader.hpp"
#include "data/views.hpp"
#include "test_util.hpp"

using namespace minidl;
using namespace minidl::data;
using minidl::testing::indexed_dataset;

namespace {

/// The normalization formula, written independently of the library.
float nv(int byte, int c, const Normalization& n = {}) {
  return (static_cast<float>(byte) / 255.0f - n.mean[c]) / n.std[c];
}

LoaderOptions airbench_options(uint64_t seed, int translate = 2) {
  LoaderOptions opt;
  opt.shuffle = true;
  opt.augment = true;
  opt.seed = seed;
  opt.scheme = AugmentScheme::kTranslateAlternatingFlip;
  opt.translate = translate;
  return opt;
}

/// The plan's augmentation of every dataset index i (the plan lists them by position).
std::vector<AugmentParams> by_index(const EpochPlan& plan) {
  std::vector<AugmentParams> out(plan.order.size());
  for (size_t k = 0; k < plan.order.size(); ++k) {
    out[static_cast<size_t>(plan.order[k])] = plan.augment[k];
  }
  return out;
}

float at(const std::vector<float>& v, int c, int y, int x) {
  return v[static_cast<size_t>(c * 1024 + y * 32 + x)];
}

/// A 32x32 image whose byte at (c, y, x) is f(c, y, x).
template <class F>
std::vector<uint8_t> pattern_image(F f) {
  std::vector<uint8_t> img(3072);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) img[static_cast<size_t>(c * 1024 + y * 32 + x)] = f(c, y, x);
  return img;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// make_epoch_plan with kTranslateAlternatingFlip

TEST_CASE("alternating flip: epoch e+1 flips exactly the images epoch e does not",
          "[airbench-data]") {
  const int64_t n = 2000;
  const LoaderOptions opt = airbench_options(7);
  std::vector<std::vector<AugmentParams>> epochs;
  for (int64_t e = 0; e < 6; ++e) epochs.push_back(by_index(make_epoch_plan(n, opt, e)));

  for (size_t e = 0; e + 1 < epochs.size(); ++e) {
    INFO("epoch " << e);
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      REQUIRE(epochs[e][i].flip != epochs[e + 1][i].flip);
    }
  }
  // Epochs of the same parity flip the same images.
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    REQUIRE(epochs[0][i].flip == epochs[4][i].flip);
    REQUIRE(epochs[1][i].flip == epochs[3][i].flip);
  }
  // About half are flipped in epoch 0 (binomial(2000, 0.5): sd 22).
  int flips = 0;
  for (const auto& a : epochs[0]) flips += a.flip ? 1 : 0;
  CHECK(flips > 900);
  CHECK(flips < 1100);

  // The flips of an image depend on the seed and the epoch, not on the shuffle order.
  LoaderOptions unshuffled = opt;
  unshuffled.shuffle = false;
  const EpochPlan plain = make_epoch_plan(n, unshuffled, 0);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    REQUIRE(plain.augment[i].flip == epochs[0][i].flip);
  }
  const auto other_seed = by_index(make_epoch_plan(n, airbench_options(8), 0));
  int same = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    same += other_seed[i].flip == epochs[0][i].flip ? 1 : 0;
  }
  CHECK(same > 900);  // another seed: an independent draw, about half agree
  CHECK(same < 1100);
  // A negative epoch: -1 is odd, so it is the opposite of epoch 0.
  const auto minus_one = by_index(make_epoch_plan(n, opt, -1));
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    REQUIRE(minus_one[i].flip != epochs[0][i].flip);
  }
}

TEST_CASE("translations cover -2..2, are new every epoch and fixed by (seed, epoch)",
          "[airbench-data]") {
  const int64_t n = 5000;
  const LoaderOptions opt = airbench_options(11);
  const EpochPlan p0 = make_epoch_plan(n, opt, 0);
  REQUIRE(p0.augment.size() == static_cast<size_t>(n));
  std::array<int, 5> ys{}, xs{};
  for (const auto& a : p0.augment) {
    REQUIRE(a.scheme == AugmentScheme::kTranslateAlternatingFlip);
    REQUIRE(a.pad == 2);
    const int dy = a.crop_y - a.pad, dx = a.crop_x - a.pad;
    REQUIRE(dy >= -2);
    REQUIRE(dy <= 2);
    REQUIRE(dx >= -2);
    REQUIRE(dx <= 2);
    ++ys[static_cast<size_t>(dy + 2)];
    ++xs[static_cast<size_t>(dx + 2)];
  }
  for (int v = 0; v < 5; ++v) {  // each value about 1000 times (sd 28)
    INFO("shift " << v - 2);
    CHECK(ys[static_cast<size_t>(v)] > 880);
    CHECK(ys[static_cast<size_t>(v)] < 1120);
    CHECK(xs[static_cast<size_t>(v)] > 880);
    CHECK(xs[static_cast<size_t>(v)] < 1120);
  }

  // Same seed and epoch: the same plan, field by field.
  const EpochPlan again = make_epoch_plan(n, opt, 0);
  CHECK(again.order == p0.order);
  for (size_t k = 0; k < p0.augment.size(); ++k) {
    REQUIRE(again.augment[k].crop_y == p0.augment[k].crop_y);
    REQUIRE(again.augment[k].crop_x == p0.augment[k].crop_x);
    REQUIRE(again.augment[k].flip == p0.augment[k].flip);
  }
  // Another epoch: new translations (the same (dy, dx) with probability 1/25 per image).
  const auto i0 = by_index(p0);
  const auto i1 = by_index(make_epoch_plan(n, opt, 1));
  int same = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    same += (i0[i].crop_y == i1[i].crop_y && i0[i].crop_x == i1[i].crop_x) ? 1 : 0;
  }
  CHECK(same > 100);  // about 200
  CHECK(same < 300);

  // translate = 0: no translation; translate = 8: offsets 0..16, all of them drawn.
  for (const auto& a : make_epoch_plan(200, airbench_options(3, 0), 5).augment) {
    REQUIRE(a.pad == 0);
    REQUIRE(a.crop_y == 0);
    REQUIRE(a.crop_x == 0);
  }
  std::array<int, 17> wide{};
  for (const auto& a : make_epoch_plan(2000, airbench_options(3, 8), 0).augment) {
    REQUIRE(a.pad == 8);
    ++wide[static_cast<size_t>(a.crop_y)];
  }
  for (int v : wide) CHECK(v > 0);
}

TEST_CASE("make_epoch_plan draws what its documentation says, for both schemes",
          "[airbench-data]") {
  // An independent implementation of the documented draws; kCropFlip must stay the plan of
  // before the second scheme existed.
  const int64_t n = 300;
  for (const auto scheme : {AugmentScheme::kCropFlip, AugmentScheme::kTranslateAlternatingFlip}) {
    for (const int64_t epoch : {0, 1, 6, 9}) {
      LoaderOptions opt = airbench_options(42, 3);
      opt.scheme = scheme;
      const EpochPlan plan = make_epoch_plan(n, opt, epoch);

      std::mt19937_64 gen(splitmix64(splitmix64(42) ^ static_cast<uint64_t>(epoch)));
      std::vector<int64_t> order(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
      for (int64_t i = n - 1; i > 0; --i) {
        const auto j = static_cast<size_t>(uniform_below(gen, static_cast<uint64_t>(i) + 1));
        std::swap(order[static_cast<size_t>(i)], order[j]);
      }
      REQUIRE(plan.order == order);
      std::mt19937_64 flip_gen(splitmix64(splitmix64(42) ^ 0x616c74666c6970ULL));
      std::vector<bool> base;
      for (int64_t i = 0; i < n; ++i) base.push_back(uniform_below(flip_gen, 2) == 1);
      for (size_t k = 0; k < static_cast<size_t>(n); ++k) {
        const AugmentParams& a = plan.augment[k];
        REQUIRE(a.scheme == scheme);
        if (scheme == AugmentScheme::kCropFlip) {
          REQUIRE(a.pad == 4);
          REQUIRE(a.crop_y == static_cast<int>(uniform_below(gen, 9)));
          REQUIRE(a.crop_x == static_cast<int>(uniform_below(gen, 9)));
          REQUIRE(a.flip == (uniform_below(gen, 2) == 1));
        } else {
          REQUIRE(a.pad == 3);
          REQUIRE(a.crop_y == static_cast<int>(uniform_below(gen, 7)));
          REQUIRE(a.crop_x == static_cast<int>(uniform_below(gen, 7)));
          REQUIRE(a.flip == (base[static_cast<size_t>(order[k])] != (epoch % 2 == 1)));
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// augment_image with kTranslateAlternatingFlip

TEST_CASE("augment_image kTranslateAlternatingFlip: reflect-padded crops by hand",
          "[airbench-data]") {
  const Normalization norm;
  std::vector<float> out(3072);
  auto params = [](int crop_y, int crop_x, bool flip, int pad = 2) {
    AugmentParams p;
    p.scheme = AugmentScheme::kTranslateAlternatingFlip;
    p.pad = pad;
    p.crop_y = crop_y;
    p.crop_x = crop_x;
    p.flip = flip;
    return p;
  };

  // Row pattern: byte 10 c + y, so each output row names its source row.
  const auto rows = pattern_image([](int c, int y, int) { return uint8_t(10 * c + y); });
  // Column pattern: byte 100 c + x.
  const auto cols = pattern_image([](int c, int, int x) { return uint8_t(100 * c + x); });

  SECTION("dy = -2 (crop_y 0): rows 2, 1 reflected above row 0 (the edge not repeated)") {
    augment_image(rows.data(), out.data(), params(0, 2, false), norm);
    for (int c = 0; c < 3; ++c)
      for (int x = 0; x < 32; ++x) {
        REQUIRE(at(out, c, 0, x) == nv(10 * c + 2, c));
        REQUIRE(at(out, c, 1, x) == nv(10 * c + 1, c));
        REQUIRE(at(out, c, 2, x) == nv(10 * c + 0, c));
        REQUIRE(at(out, c, 3, x) == nv(10 * c + 1, c));
        REQUIRE(at(out, c, 31, x) == nv(10 * c + 29, c));
      }
  }

  SECTION("dy = +2 (crop_y 4): rows 30, 29 reflected below row 31") {
    augment_image(rows.data(), out.data(), params(4, 2, false), norm);
    for (int c = 0; c < 3; ++c)
      for (int x = 0; x < 32; ++x) {
        REQUIRE(at(out, c, 0, x) == nv(10 * c + 2, c));
        REQUIRE(at(out, c, 29, x) == nv(10 * c + 31, c));
        REQUIRE(at(out, c, 30, x) == nv(10 * c + 30, c));
        REQUIRE(at(out, c, 31, x) == nv(10 * c + 29, c));
      }
  }

  SECTION("dx = +1 (crop_x 3), no flip: columns 1..31 then column 30") {
    augment_image(cols.data(), out.data(), params(2, 3, false), norm);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y) {
        REQUIRE(at(out, c, y, 0) == nv(100 * c + 1, c));
        REQUIRE(at(out, c, y, 15) == nv(100 * c + 16, c));
        REQUIRE(at(out, c, y, 30) == nv(100 * c + 31, c));
        REQUIRE(at(out, c, y, 31) == nv(100 * c + 30, c));
      }
  }

  SECTION("dx = +1 with flip: the mirror image (columns 31..0), then shifted") {
    // Mirrored image M[x] = 31 - x; crop column x reads M[r(x + 1)].
    augment_image(cols.data(), out.data(), params(2, 3, true), norm);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y) {
        REQUIRE(at(out, c, y, 0) == nv(100 * c + 30, c));
        REQUIRE(at(out, c, y, 15) == nv(100 * c + 15, c));
        REQUIRE(at(out, c, y, 30) == nv(100 * c + 0, c));
        REQUIRE(at(out, c, y, 31) == nv(100 * c + 1, c));  // M[r(32)] = M[30]
      }
  }

  SECTION("dx = -2 with flip: M[2], M[1] reflected left of M[0]") {
    augment_image(cols.data(), out.data(), params(2, 0, true), norm);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y) {
        REQUIRE(at(out, c, y, 0) == nv(100 * c + 29, c));
        REQUIRE(at(out, c, y, 1) == nv(100 * c + 30, c));
        REQUIRE(at(out, c, y, 2) == nv(100 * c + 31, c));
        REQUIRE(at(out, c, y, 3) == nv(100 * c + 30, c));
        REQUIRE(at(out, c, y, 31) == nv(100 * c + 2, c));
      }
  }

  SECTION("every pixel against an explicitly padded copy, random image, several draws") {
    const Dataset ds = indexed_dataset(1, 99);
    const uint8_t* src = ds.images.data();
    for (const int pad : {0, 1, 2, 4, 8}) {
      const int side = 32 + 2 * pad;
      for (const bool flip : {false, true}) {
        // Mirror (if flip), copy into the middle of a side x side array, then fill the border
        // from the inside out: padded index pad - j takes pad + j, pad + 31 + j takes pad + 31 - j.
        std::vector<int> padded(static_cast<size_t>(3 * side * side), -1);
        auto p = [&](int c, int y, int x) -> int& {
          return padded[static_cast<size_t>((c * side + y) * side + x)];
        };
        for (int c = 0; c < 3; ++c)
          for (int y = 0; y < 32; ++y)
            for (int x = 0; x < 32; ++x)
              p(c, y + pad, x + pad) = src[c * 1024 + y * 32 + (flip ? 31 - x : x)];
        for (int c = 0; c < 3; ++c) {
          for (int y = pad; y < pad + 32; ++y)
            for (int j = 1; j <= pad; ++j) {
              p(c, y, pad - j) = p(c, y, pad + j);
              p(c, y, pad + 31 + j) = p(c, y, pad + 31 - j);
            }
          for (int x = 0; x < side; ++x)
            for (int j = 1; j <= pad; ++j) {
              p(c, pad - j, x) = p(c, pad + j, x);
              p(c, pad + 31 + j, x) = p(c, pad + 31 - j, x);
            }
        }
        for (int cy = 0; cy <= 2 * pad; cy += (pad > 0 ? pad : 1)) {
          for (int cx = 0; cx <= 2 * pad; ++cx) {
            INFO("pad " << pad << " flip " << flip << " crop " << cy << ", " << cx);
            augment_image(src, out.data(), params(cy, cx, flip, pad), norm);
            for (int c = 0; c < 3; ++c)
              for (int y = 0; y < 32; ++y)
                for (int x = 0; x < 32; ++x)
                  REQUIRE(at(out, c, y, x) == nv(p(c, y + cy, x + cx), c));
          }
        }
      }
    }
    // The identity crop without flip is normalize_image.
    std::vector<float> plain(3072);
    normalize_image(src, plain.data(), norm);
    augment_image(src, out.data(), params(2, 2, false), norm);
    CHECK(out == plain);
  }
}

TEST_CASE("DataLoader with kTranslateAlternatingFlip: each image is augment_image of its plan",
          "[airbench-data]") {
  const Dataset ds = indexed_dataset(150, 4);
  LoaderOptions opt = airbench_options(5);
  opt.batch_size = 64;
  for (const int64_t epoch : {0, 1}) {
    DataLoader loader(ds, opt);
    loader.start_epoch(epoch);
    const EpochPlan plan = make_epoch_plan(ds.size(), opt, epoch);
    std::vector<float> want(3072);
    Batch b;
    size_t pos = 0;
    while (loader.next(b)) {
      for (size_t k = 0; k < b.labels.size(); ++k, ++pos) {
        const int64_t index = plan.order[pos];
        REQUIRE(b.labels[k] == index);
        augment_image(ds.images.data() + index * 3072, want.data(), plan.augment[pos]);
        REQUIRE(
            std::equal(want.begin(), want.end(), b.images.data() + static_cast<int64_t>(k) * 3072));
      }
    }
    CHECK(pos == 150);
  }
}

// ---------------------------------------------------------------------------------------------
// TTA views

TEST_CASE("hflip and crop_reflect against hand-computed values", "[airbench-data]") {
  // [2, 2, 3, 4]: plane p (n * 2 + c) holds 12 p + 4 y + x.
  std::vector<float> values(48);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  const Tensor x(Shape{2, 2, 3, 4}, values);
  auto plane = [](const Tensor& t, int64_t p) {
    return std::vector<float>(t.data() + p * 12, t.data() + (p + 1) * 12);
  };
  auto plus = [](std::vector<float> v, float d) {
    for (auto& e : v) e += d;
    return v;
  };

  SECTION("hflip") {
    const Tensor f = hflip(x);
    REQUIRE(f.shape() == Shape{2, 2, 3, 4});
    CHECK(plane(f, 0) == std::vector<float>{3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8});
    CHECK(plane(f, 3) == plus({3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8}, 36));
    CHECK(plane(hflip(f), 2) == plane(x, 2));
    CHECK_FALSE(f.requires_grad());
  }

  SECTION("crop_reflect") {
    // Plane 0 reflect-padded by 1 (rows -1 and 3 are row 1, columns -1 and 4 are 1 and 2):
    //   5 4 5 6 7 6
    //   1 0 1 2 3 2
    //   5 4 5 6 7 6
    //   9 8 9 10 11 10
    //   5 4 5 6 7 6
    const Tensor a = crop_reflect(x, 1, 0, 0);
    REQUIRE(a.shape() == Shape{2, 2, 3, 4});
    CHECK(plane(a, 0) == std::vector<float>{5, 4, 5, 6, 1, 0, 1, 2, 5, 4, 5, 6});
    CHECK(plane(a, 3) == plus({5, 4, 5, 6, 1, 0, 1, 2, 5, 4, 5, 6}, 36));
    const Tensor b = crop_reflect(x, 1, 2, 2);
    CHECK(plane(b, 0) == std::vector<float>{5, 6, 7, 6, 9, 10, 11, 10, 5, 6, 7, 6});
    CHECK(plane(b, 1) == plus({5, 6, 7, 6, 9, 10, 11, 10, 5, 6, 7, 6}, 12));
    const Tensor c = crop_reflect(x, 1, 0, 2);
    CHECK(plane(c, 0) == std::vector<float>{5, 6, 7, 6, 1, 2, 3, 2, 5, 6, 7, 6});
    // Pad 2 (the largest a 3-row image allows): rows -2, -1, 0 are rows 2, 1, 0.
    const Tensor d = crop_reflect(x, 2, 0, 0);
    CHECK(plane(d, 0) == std::vector<float>{10, 9, 8, 9, 6, 5, 4, 5, 2, 1, 0, 1});
    const Tensor e = crop_reflect(x, 2, 4, 1);  // rows 2, 3 -> 1, 4 -> 0; columns -1..2
    CHECK(plane(e, 0) == std::vector<float>{9, 8, 9, 10, 5, 4, 5, 6, 1, 0, 1, 2});

    // The centre crop is the identity, for pad 1 and pad 0.
    CHECK(crop_reflect(x, 1, 1, 1).vec() == x.vec());
    CHECK(crop_reflect(x, 0, 0, 0).vec() == x.vec());
    CHECK(crop_reflect(x, 2, 2, 2).vec() == x.vec());
    // A new tensor, not a view of the input.
    CHECK_FALSE(crop_reflect(x, 1, 1, 1).same(x));
  }

  SECTION("crop_reflect of the normalized image agrees with augment_image") {
    // augment_image's kTranslateAlternatingFlip is hflip, then crop_reflect, on normalized data.
    const Dataset ds = indexed_dataset(1, 17);
    const Tensor img = to_tensor(ds, 0, 1);
    std::vector<float> out(3072);
    AugmentParams p;
    p.scheme = AugmentScheme::kTranslateAlternatingFlip;
    p.pad = 2;
    p.crop_y = 3;
    p.crop_x = 0;
    p.flip = true;
    augment_image(ds.images.data(), out.data(), p);
    const Tensor view = crop_reflect(hflip(img), 2, 3, 0);
    CHECK(std::vector<float>(view.data(), view.data() + 3072) == out);
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST_CASE("airbench data functions reject bad arguments", "[airbench-data]") {
  const Tensor x(Shape{1, 1, 3, 4});
  CHECK_THROWS_WITH(hflip(Tensor(Shape{3, 4, 4})), Catch::Contains("hflip") &&
                                                       Catch::Contains("[N, C, H, W]") &&
                                                       Catch::Contains("[3, 4, 4]"));
  CHECK_THROWS_AS(hflip(Tensor()), std::invalid_argument);
  CHECK_THROWS_WITH(crop_reflect(Tensor(Shape{2, 3}), 1, 1, 1),
                    Catch::Contains("crop_reflect") && Catch::Contains("[N, C, H, W]"));
  CHECK_THROWS_AS(crop_reflect(Tensor(), 1, 1, 1), std::invalid_argument);
  CHECK_THROWS_WITH(crop_reflect(x, 3, 0, 0),  // pad 3 = H
                    Catch::Contains("crop_reflect") && Catch::Contains("pad < H"));
  CHECK_THROWS_AS(crop_reflect(x, -1, 0, 0), std::invalid_argument);
  CHECK_THROWS_WITH(crop_reflect(x, 1, 3, 0),
                    Catch::Contains("crop_reflect") && Catch::Contains("0..2"));
  CHECK_THROWS_AS(crop_reflect(x, 1, 0, -1), std::invalid_argument);
  CHECK_THROWS_AS(crop_reflect(x, 1, 0, 3), std::invalid_argument);
  CHECK_NOTHROW(crop_reflect(x, 2, 4, 4));

  // translate outside 0..8, in make_epoch_plan and the DataLoader.
  const Dataset ds = indexed_dataset(4, 1);
  for (const int t : {-1, 9}) {
    const LoaderOptions bad = airbench_options(1, t);
    CHECK_THROWS_WITH(make_epoch_plan(4, bad, 0), Catch::Contains("make_epoch_plan") &&
                                                      Catch::Contains("translate") &&
                                                      Catch::Contains("0..8"));
    CHECK_THROWS_WITH(DataLoader(ds, bad), Catch::Contains("DataLoader") &&
                                               Catch::Contains("translate") &&
                                               Catch::Contains("0..8"));
  }
  // kCropFlip ignores translate, and so does a loader that does not augment.
  LoaderOptions crop = airbench_options(1, 9);
  crop.scheme = AugmentScheme::kCropFlip;
  CHECK_NOTHROW(make_epoch_plan(4, crop, 0));
  LoaderOptions off = airbench_options(1, 9);
  off.augment = false;
  CHECK_NOTHROW(make_epoch_plan(4, off, 0));

  // augment_image: pad outside 0..8, crop outside 0..2 pad, an unknown scheme.
  std::vector<float> out(3072);
  AugmentParams p;
  p.scheme = AugmentScheme::kTranslateAlternatingFlip;
  p.pad = 2;
  p.crop_y = 5;
  p.crop_x = 0;
  CHECK_THROWS_WITH(augment_image(ds.images.data(), out.data(), p),
                    Catch::Contains("augment_image") && Catch::Contains("0..4"));
  p.crop_y = 4;
  CHECK_NOTHROW(augment_image(ds.images.data(), out.data(), p));
  p.pad = 9;
  CHECK_THROWS_WITH(augment_image(ds.images.data(), out.data(), p),
                    Catch::Contains("augment_image") && Catch::Contains("pad 9"));
  p.pad = 2;
  p.scheme = static_cast<AugmentScheme>(7);
  CHECK_THROWS_AS(augment_image(ds.images.data(), out.data(), p), std::invalid_argument);
}
