// minidl tests — a correctness oracle for conv2d: ops::conv2d (forward, and backward through
// x, weight and bias) against a naive direct convolution in plain loops, accumulated in
// double, over a deterministic grid of geometries.
//
// Error metric, separately for y, dx, dw and db: the normwise relative error
//   max_i |fast_i - ref_i| / max(max_i |ref_i|, 1e-6),   required <= 1e-4.
// Inputs are standard normal (seeded per geometry); weights are scaled like Kaiming,
// std sqrt(2 / (C_in K K)), so y, dx and dw stay of order one.
//
// The grid (see winograd_grid and im2col_grid):
//   - 3x3, stride 1, padding 0, 1, 2 (the geometries a Winograd fast path takes): every
//     C_in x C_out in {1, 3, 16, 33, 64}^2, every size, every padding;
//   - every other (kernel in {1, 3, 5}, stride in {1, 2}, padding in {0, 1, 2}): a covering
//     set in which every C_in, C_out, N and size appears, plus a fixed pseudo-random sample.
// Sizes H x W: 1x1, 5x5, 8x8, 32x32 and the non-square 5x8, 8x5, 8x32. N in {1, 3}.
// Geometries whose kernel is larger than the padded input are skipped (conv2d refuses them).
// A second test case runs a covering set per (kernel, stride, padding) with bias undefined,
// with x frozen (dw only), with weight frozen (dx only), and with two backward passes whose
// gradients must accumulate (+=), since conv2d skips or assigns GEMMs in those cases.
// Both print their worst errors with WARN, separately for 3x3 stride 1 and the rest.
// A hidden case, "[.precision]" (last), measures Winograd's and GEMM's float32 error on
// airbench94's convolutions at 64 images, against the same naive convolution.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tensor.hpp"
#include "core/winograd.hpp"

using namespace minidl;

namespace {

constexpr double kTol = 1e-4;

/// One convolution problem: x [N, C, H, W], weight [CO, C, K, K], stride s, padding p.
struct Geom {
  int64_t N, C, CO, H, W, K, s, p;
  int64_t HO() const { return (H + 2 * p - K) / s + 1; }
  int64_t WO() const { return (W + 2 * p - K) / s + 1; }
  /// conv2d refuses a kernel larger than the padded input.
  bool valid() const { return H + 2 * p >= K && W + 2 * p >= K; }
  bool winograd() const { return K == 3 && s == 1; }
  std::string str() const {
    std::ostringstream o;
    o << "x [" << N << ", " << C << ", " << H << ", " << W << "], weight [" << CO << ", " << C
      << ", " << K << ", " << K << "], stride " << s << ", padding " << p << " -> y [" << N << ", "
      << CO << ", " << HO() << ", " << WO() << "]";
    return o.str();
  }
};

/// For kernel offset k: the output indices o in [lo[k], hi[k]) whose input index o*s - p + k
/// lies inside [0, in); the others read zero padding. Computed by brute force, once.
void valid_outputs(int64_t in, int64_t out, int64_t K, int64_t s, int64_t p,
                   std::vector<int64_t>& lo, std::vector<int64_t>& hi) {
  lo.assign(K, 0);
  hi.assign(K, 0);
  for (int64_t k = 0; k < K; ++k) {
    int64_t a = out, b = 0;
    for (int64_t o = 0; o < out; ++o) {
      const int64_t i = o * s - p + k;
      if (i >= 0 && i < in) {
        a = std::min(a, o);
        b = o + 1;
      }
    }
    lo[k] = std::min(a, b);
    hi[k] = b;
  }
}

/// Naive conv2d forward (torch.nn.functional.conv2d: cross-correlation, groups = 1,
/// dilation = 1, zero padding), accumulated in double.
/// x [N, C_in, H, W], w [C_out, C_in, K, K], b [C_out] or nullptr -> y [N, C_out, H_out, W_out],
/// H_out = (H + 2p - K) / s + 1 (likewise W_out), with
///   y[n, o, oh, ow] = b[o] + sum_{c, kh, kw} w[o, c, kh, kw] * x[n, c, oh*s-p+kh, ow*s-p+kw]
/// where x is zero outside [0, H) x [0, W).
std::vector<double> naive_conv2d_forward(const float* x, const float* w, const float* b,
                                         const Geom& g) {
  const int64_t HO = g.HO(), WO = g.WO(), K = g.K;
  std::vector<int64_t> lh, hh, lw, hw;
  valid_outputs(g.H, HO, K, g.s, g.p, lh, hh);
  valid_outputs(g.W, WO, K, g.s, g.p, lw, hw);
  std::vector<double> y(g.N * g.CO * HO * WO, 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.CO; ++o) {
      double* yo = y.data() + (n * g.CO + o) * HO * WO;
      if (b) std::fill(yo, yo + HO * WO, static_cast<double>(b[o]));
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t kh = 0; kh < K; ++kh)
          for (int64_t kw = 0; kw < K; ++kw) {
            const double wv = w[((o * g.C + c) * K + kh) * K + kw];
            for (int64_t oh = lh[kh]; oh < hh[kh]; ++oh) {
              // x[xi + ow * s] = x[n, c, oh*s - p + kh, ow*s - p + kw]
              const int64_t xi = ((n * g.C + c) * g.H + oh * g.s - g.p + kh) * g.W - g.p + kw;
              double* yr = yo + oh * WO;
              for (int64_t ow = lw[kw]; ow < hw[kw]; ++ow) yr[ow] += wv * x[xi + ow * g.s];
            }
          }
    }
  return y;
}

/// Naive gradient of naive_conv2d_forward with respect to x, for an output gradient dy,
/// accumulated in double.
/// dy [N, C_out, H_out, W_out], w [C_out, C_in, K, K] -> dx [N, C_in, H, W] with
///   dx[n, c, ih, iw] = sum_{o, kh, kw, oh, ow : oh*s - p + kh = ih, ow*s - p + kw = iw}
///                      w[o, c, kh, kw] * dy[n, o, oh, ow]
/// (computed as the scatter dx[n, c, oh*s - p + kh, ow*s - p + kw] += w[o, c, kh, kw] * dy[...],
/// dropping the terms that land in the padding).
std::vector<double> naive_conv2d_input_grad(const float* dy, const float* w, const Geom& g) {
  const int64_t HO = g.HO(), WO = g.WO(), K = g.K;
  std::vector<int64_t> lh, hh, lw, hw;
  valid_outputs(g.H, HO, K, g.s, g.p, lh, hh);
  valid_outputs(g.W, WO, K, g.s, g.p, lw, hw);
  std::vector<double> dx(g.N * g.C * g.H * g.W, 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t o = 0; o < g.CO; ++o)
        for (int64_t kh = 0; kh < K; ++kh)
          for (int64_t kw = 0; kw < K; ++kw) {
            const double wv = w[((o * g.C + c) * K + kh) * K + kw];
            for (int64_t oh = lh[kh]; oh < hh[kh]; ++oh) {
              const float* dyr = dy + ((n * g.CO + o) * HO + oh) * WO;
              const int64_t xi = ((n * g.C + c) * g.H + oh * g.s - g.p + kh) * g.W - g.p + kw;
              for (int64_t ow = lw[kw]; ow < hw[kw]; ++ow) dx[xi + ow * g.s] += wv * dyr[ow];
            }
          }
  return dx;
}

/// Naive gradient of naive_conv2d_forward with respect to w, for an output gradient dy,
/// accumulated in double.
/// dy [N, C_out, H_out, W_out], x [N, C_in, H, W] -> dw [C_out, C_in, K, K] with
///   dw[o, c, kh, kw] = sum_{n, oh, ow} dy[n, o, oh, ow] * x[n, c, oh*s - p + kh, ow*s - p + kw]
/// (x zero in the padding). The bias gradient is naive_conv2d_bias_grad.
std::vector<double> naive_conv2d_weight_grad(const float* dy, const float* x, const Geom& g) {
  const int64_t HO = g.HO(), WO = g.WO(), K = g.K;
  std::vector<int64_t> lh, hh, lw, hw;
  valid_outputs(g.H, HO, K, g.s, g.p, lh, hh);
  valid_outputs(g.W, WO, K, g.s, g.p, lw, hw);
  std::vector<double> dw(g.CO * g.C * K * K, 0.0);
  std::vector<double> acc(WO);  // acc[ow]: the terms of one output column, summed at the end
  for (int64_t o = 0; o < g.CO; ++o)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t kh = 0; kh < K; ++kh)
        for (int64_t kw = 0; kw < K; ++kw) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t n = 0; n < g.N; ++n)
            for (int64_t oh = lh[kh]; oh < hh[kh]; ++oh) {
              const float* dyr = dy + ((n * g.CO + o) * HO + oh) * WO;
              const int64_t xi = ((n * g.C + c) * g.H + oh * g.s - g.p + kh) * g.W - g.p + kw;
              for (int64_t ow = lw[kw]; ow < hw[kw]; ++ow)
                acc[ow] += static_cast<double>(dyr[ow]) * x[xi + ow * g.s];
            }
          double s = 0.0;
          for (double a : acc) s += a;
          dw[((o * g.C + c) * K + kh) * K + kw] = s;
        }
  return dw;
}

/// Naive bias gradient: dy [N, C_out, H_out, W_out] -> db [C_out],
///   db[o] = sum_{n, oh, ow} dy[n, o, oh, ow].
std::vector<double> naive_conv2d_bias_grad(const float* dy, const Geom& g) {
  const int64_t HWO = g.HO() * g.WO();
  std::vector<double> db(g.CO, 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.CO; ++o)
      for (int64_t i = 0; i < HWO; ++i) db[o] += dy[(n * g.CO + o) * HWO + i];
  return db;
}

/// max|fast - ref| / max(max|ref|, 1e-6).
double rel_err(const float* fast, const std::vector<double>& ref) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(fast[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return diff / std::max(scale, 1e-6);
}

/// ||fast - ref||_2 / ||ref||_2 (the Frobenius counterpart of rel_err).
double frobenius_rel_err(const float* fast, const std::vector<double>& ref) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(fast[i]) - ref[i];
    diff += d * d;
    scale += ref[i] * ref[i];
  }
  return std::sqrt(diff / std::max(scale, 1e-12));
}

void add_into(std::vector<double>& a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
}

/// Which inputs exist / require a gradient, and how many backward passes run.
struct Variant {
  const char* name;
  bool bias;    // bias defined (and requiring grad)
  bool x_grad;  // x requires grad
  bool w_grad;  // weight requires grad
  bool twice;   // a second forward + backward (another dy) accumulates into the gradients
};
const Variant kFull{"bias, x and weight require grad", true, true, true, false};
const Variant kVariants[] = {
    {"bias undefined", false, true, true, false},
    {"x frozen, bias undefined: dw only", false, false, true, false},
    {"weight frozen, bias undefined: dx only", false, true, false, false},
    {"second backward accumulates (+=) into x, weight and bias grads", true, true, true, true},
};

/// Errors of one check (-1: not applicable).
struct Errors {
  double y = -1, dx = -1, dw = -1, db = -1;
};

/// Worst errors over a group of geometries.
struct Worst {
  Errors e{0, 0, 0, 0};
  int64_t count = 0;
  void add(const Errors& x) {
    e.y = std::max(e.y, x.y);
    e.dx = std::max(e.dx, x.dx);
    e.dw = std::max(e.dw, x.dw);
    e.db = std::max(e.db, x.db);
    ++count;
  }
  /// "<group> worst normwise relative error: y .., dx .., dw .., db .. over <count> <unit>".
  std::string str(const std::string& group, const std::string& unit = "geometries") const {
    std::ostringstream o;
    o.precision(2);
    o << std::scientific << group << " worst normwise relative error: y " << e.y << ", dx " << e.dx
      << ", dw " << e.dw << ", db " << e.db << " over " << count << " " << unit;
    return o.str();
  }
};

Tensor randn(const Shape& shape, Generator& gen, float scale, bool requires_grad) {
  Tensor t(shape, requires_grad);
  for (float& v : t.mutable_vec()) v = scale * gen.normal();
  return t;
}

/// One geometry's inputs and ops::conv2d's results: y, and the gradients left in x, w, b.
struct Run {
  Geom g;
  const Variant* v;
  Tensor x, w, b, dy, dy2, y;
};

/// Draws g's inputs (seeded by g) and runs ops::conv2d forward and backward(dy), and with
/// v.twice a second forward and backward(dy2) into the same gradients.
Run run_fast(const Geom& g, const Variant& v) {
  Generator gen(
      ((((((g.N * 131 + g.C) * 131 + g.CO) * 131 + g.H) * 131 + g.W) * 7 + g.K) * 3 + g.s) * 3 +
      g.p);
  const float wstd = static_cast<float>(std::sqrt(2.0 / static_cast<double>(g.C * g.K * g.K)));
  Run r{g, &v, {}, {}, {}, {}, {}, {}};
  r.x = randn({g.N, g.C, g.H, g.W}, gen, 1.0f, v.x_grad);
  r.w = randn({g.CO, g.C, g.K, g.K}, gen, wstd, v.w_grad);
  r.b = v.bias ? randn({g.CO}, gen, 1.0f, true) : Tensor();
  r.dy = randn({g.N, g.CO, g.HO(), g.WO()}, gen, 1.0f, false);
  r.dy2 = v.twice ? randn(r.dy.shape(), gen, 1.0f, false) : Tensor();
  r.y = ops::conv2d(r.x, r.w, r.b, g.s, g.p);
  r.y.backward(r.dy);
  if (v.twice) ops::conv2d(r.x, r.w, r.b, g.s, g.p).backward(r.dy2);
  return r;
}

/// Checks one run against the naive oracle: CHECKs every error <= kTol, and that exactly the
/// inputs requiring grad got a gradient.
Errors check_run(const Run& r) {
  const Geom& g = r.g;
  const Variant& v = *r.v;
  INFO(g.str() << " [" << v.name << "]");
  REQUIRE(r.y.shape() == Shape{g.N, g.CO, g.HO(), g.WO()});
  CHECK(r.x.has_grad() == v.x_grad);
  CHECK(r.w.has_grad() == v.w_grad);
  Errors e;
  e.y = rel_err(r.y.data(),
                naive_conv2d_forward(r.x.data(), r.w.data(), v.bias ? r.b.data() : nullptr, g));
  if (v.x_grad && r.x.has_grad()) {
    std::vector<double> ref = naive_conv2d_input_grad(r.dy.data(), r.w.data(), g);
    if (v.twice) add_into(ref, naive_conv2d_input_grad(r.dy2.data(), r.w.data(), g));
    e.dx = rel_err(r.x.grad_data(), ref);
  }
  if (v.w_grad && r.w.has_grad()) {
    std::vector<double> ref = naive_conv2d_weight_grad(r.dy.data(), r.x.data(), g);
    if (v.twice) add_into(ref, naive_conv2d_weight_grad(r.dy2.data(), r.x.data(), g));
    e.dw = rel_err(r.w.grad_data(), ref);
  }
  if (v.bias) {
    REQUIRE(r.b.has_grad());
    std::vector<double> ref = naive_conv2d_bias_grad(r.dy.data(), g);
    if (v.twice) add_into(ref, naive_conv2d_bias_grad(r.dy2.data(), g));
    e.db = rel_err(r.b.grad_data(), ref);
  }
  INFO("normwise relative errors: y " << e.y << ", dx " << e.dx << ", dw " << e.dw << ", db "
                                      << e.db << " (-1: not computed), tolerance " << kTol);
  CHECK(e.y <= kTol);
  CHECK(e.dx <= kTol);
  CHECK(e.dw <= kTol);
  CHECK(e.db <= kTol);
  return e;
}

/// Checks geometries in chunks: ops::conv2d runs on every geometry of a chunk (about 32 MB of
/// tensors), then the oracle checks them one by one. Interleaving each short, parallel conv2d
/// call with the long, serial oracle loops would keep OpenMP's idle thread spin-waiting through
/// the whole run (libgomp spins for a while after each parallel region before it sleeps), which
/// tripled the wall time on a busy 2-core machine.
class Checker {
 public:
  /// Queues g with variant v; its errors go into *worst when the chunk is checked.
  void add(const Geom& g, const Variant& v, Worst* worst) {
    runs_.push_back(run_fast(g, v));
    worsts_.push_back(worst);
    const Run& r = runs_.back();
    floats_ += 2 * (r.x.numel() + r.w.numel()) + r.y.numel() * (v.twice ? 3 : 2);
    if (floats_ > kChunkFloats) flush();
  }
  /// Checks every queued run.
  void flush() {
    for (size_t i = 0; i < runs_.size(); ++i) worsts_[i]->add(check_run(runs_[i]));
    runs_.clear();
    worsts_.clear();
    floats_ = 0;
  }

 private:
  static constexpr int64_t kChunkFloats = 8 << 20;
  std::vector<Run> runs_;
  std::vector<Worst*> worsts_;
  int64_t floats_ = 0;
};

const int64_t kBatch[] = {1, 3};
const int64_t kChannels[] = {1, 3, 16, 33, 64};
struct Size {
  int64_t H, W;
};
const Size kSizes[] = {{1, 1}, {5, 5}, {8, 8}, {32, 32}, {5, 8}, {8, 5}, {8, 32}};
constexpr int64_t kNumChannels = 5, kNumSizes = 7;

/// 3x3, stride 1, padding 0, 1, 2: every (C_in, C_out, size, padding); N alternates so both
/// batch sizes meet every C_in, C_out and size.
std::vector<Geom> winograd_grid() {
  std::vector<Geom> out;
  for (int64_t p = 0; p < 3; ++p)
    for (int64_t i = 0; i < kNumChannels; ++i)
      for (int64_t j = 0; j < kNumChannels; ++j)
        for (int64_t k = 0; k < kNumSizes; ++k) {
          const Geom g{kBatch[(i + j + k + p) % 2],
                       kChannels[i],
                       kChannels[j],
                       kSizes[k].H,
                       kSizes[k].W,
                       3,
                       1,
                       p};
          if (g.valid()) out.push_back(g);
        }
  return out;
}

/// For one (kernel, stride, padding): a covering set (every size once, with every C_in, C_out
/// and N among them), shifted by `shift` so different (K, s, p) see different pairs.
std::vector<Geom> covering_set(int64_t K, int64_t s, int64_t p, int64_t shift) {
  std::vector<Geom> out;
  for (int64_t k = 0; k < kNumSizes; ++k) {
    const Geom g{kBatch[(k + shift) % 2],
                 kChannels[(k + shift) % kNumChannels],
                 kChannels[(2 * k + 3 * shift + 1) % kNumChannels],
                 kSizes[k].H,
                 kSizes[k].W,
                 K,
                 s,
                 p};
    if (g.valid()) out.push_back(g);
  }
  return out;
}

/// Every (kernel, stride, padding) except 3x3 stride 1: its covering set plus a fixed
/// pseudo-random sample of `samples` more valid geometries.
std::vector<Geom> im2col_grid(int samples) {
  std::vector<Geom> out;
  Generator pick(20240611);
  int64_t shift = 0;
  for (int64_t K : {1, 3, 5})
    for (int64_t s : {1, 2})
      for (int64_t p : {0, 1, 2}) {
        if (K == 3 && s == 1) continue;
        for (const Geom& g : covering_set(K, s, p, shift++)) out.push_back(g);
        for (int i = 0; i < samples;) {
          const Size sz = kSizes[pick.randint(kNumSizes)];
          const Geom g{kBatch[pick.randint(2)],
                       kChannels[pick.randint(kNumChannels)],
                       kChannels[pick.randint(kNumChannels)],
                       sz.H,
                       sz.W,
                       K,
                       s,
                       p};
          if (g.valid()) {
            out.push_back(g);
            ++i;
          }
        }
      }
  return out;
}

}  // namespace

TEST_CASE("conv2d forward and gradients match a naive direct convolution", "[oracle]") {
  const std::vector<Geom> wino_grid = winograd_grid(), other_grid = im2col_grid(8);
  {  // every (K, s, p) appears, each with every N, C_in, C_out and every size it accepts
    std::map<std::tuple<int64_t, int64_t, int64_t>, std::array<std::set<int64_t>, 4>> seen;
    for (const auto* grid : {&wino_grid, &other_grid})
      for (const Geom& g : *grid) {
        auto& axes = seen[{g.K, g.s, g.p}];
        axes[0].insert(g.N);
        axes[1].insert(g.C);
        axes[2].insert(g.CO);
        axes[3].insert(g.H * 1000 + g.W);
      }
    CHECK(seen.size() == 18);
    for (const auto& [ksp, axes] : seen) {
      const auto [K, s, p] = ksp;
      size_t sizes = 0;
      for (const Size& sz : kSizes) sizes += Geom{1, 1, 1, sz.H, sz.W, K, s, p}.valid();
      INFO("kernel " << K << ", stride " << s << ", padding " << p);
      CHECK(axes[0].size() == 2);
      CHECK(axes[1].size() == kNumChannels);
      CHECK(axes[2].size() == kNumChannels);
      CHECK(axes[3].size() == sizes);
    }
  }
  Worst wino, other;
  Checker checker;
  for (const Geom& g : wino_grid) checker.add(g, kFull, &wino);
  for (const Geom& g : other_grid) checker.add(g, kFull, &other);
  checker.flush();
  WARN(wino.str("3x3 stride-1 (Winograd for C_in >= 8)"));
  WARN(other.str("other (im2col+GEMM)"));
  WARN("conv2d oracle: " << wino.count + other.count << " geometries checked");
}

TEST_CASE(
    "conv2d without bias, with frozen inputs, and accumulating gradients matches the "
    "naive convolution",
    "[oracle]") {
  Worst wino, other;
  Checker checker;
  int64_t shift = 0;
  constexpr int64_t kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);
  for (int64_t K : {1, 3, 5})
    for (int64_t s : {1, 2})
      for (int64_t p : {0, 1, 2})
        for (const Geom& g : covering_set(K, s, p, shift++))
          for (const Variant& v : kVariants) checker.add(g, v, g.winograd() ? &wino : &other);
  checker.flush();
  auto unit = [&](const Worst& w) {
    return "checks (" + std::to_string(w.count / kNumVariants) + " geometries x " +
           std::to_string(kNumVariants) +
           " variants: no bias; x frozen; weight frozen; "
           "two backwards)";
  };
  WARN(wino.str("3x3 stride-1 (Winograd for C_in >= 8), variants", unit(wino)));
  WARN(other.str("other (im2col+GEMM), variants", unit(other)));
}

// Batches of 16 and more images: the Winograd path then runs 16 images as the lanes of one
// vector (core/winograd.cpp, kLanes), moves whole 16 x 16 blocks between NCHW and the lane
// layout when the width is a multiple of 16, and leaves a last partial chunk (33 = 16 + 16 + 1
// images with 2 threads); on small planes several chunks share one GEMM block. The stride-2
// rows cover the phase-plane im2col/col2im.
TEST_CASE("conv2d matches the naive convolution on large batches (vector lanes, partial chunks)",
          "[oracle]") {
  Worst wino, other;
  Checker checker;
  const Geom geoms[] = {
      {33, 16, 16, 32, 32, 3, 1, 1},  // resnet20's first stage, 3 chunks of 16, 16 and 1
      {32, 32, 8, 16, 16, 3, 1, 0},   // whole chunks only
      {35, 9, 33, 8, 17, 3, 1, 2},    // odd width: the lane layout without block transposes
      {17, 64, 64, 8, 8, 3, 1, 1},    // resnet20's last stage shape
      // Several chunks per GEMM block (winograd.cpp, Tiling::S > 1), the last group partial:
      {130, 64, 64, 4, 4, 3, 1, 1},   // one tile per image: 9 chunks in groups of 2, 2 images last
      {200, 16, 24, 8, 8, 3, 1, 1},   // four tiles per image: 13 chunks in groups of 2
      {33, 16, 32, 32, 32, 3, 2, 1},  // stride-2 phase planes
      // resnet20's stem and 1x1 stride-2 shortcut: with 16 and 32 output channels, the AVX2
      // path's weight gradient as the plain product col dy^T (core/conv.cpp, dw_nn)
      {9, 3, 16, 32, 32, 3, 1, 1},
      {9, 16, 32, 16, 16, 1, 2, 0},
      {20, 5, 7, 9, 11, 5, 2, 2}};
  for (const Geom& g : geoms)
    // Pointers to the variants themselves: a run keeps &variant until its chunk is checked
    // (iterating over copies in an initializer_list left it dangling; ASan's
    // stack-use-after-scope).
    for (const Variant* v : {&kFull, &kVariants[1], &kVariants[3]})
      checker.add(g, *v, g.winograd() ? &wino : &other);
  checker.flush();
  WARN(wino.str("large batches, 3x3 stride-1 (Winograd)"));
  WARN(other.str("large batches, other (im2col+GEMM)"));
  CHECK(wino.count == 21);  // 7 geometries 3x3 stride 1 (the stem's among them) x 3 variants
}

// im2col and col2im (core/kernels.hpp) directly against their definitions, over every
// branch: the "same" stride-1 path, the stride-2 phase-plane path (and its 3x3, padding 1,
// even-size special case: H, W in {2, 4, 8}; 2 gives a single output row or column), the generic
// path with stride 1 (unpadded or with an output smaller than the input) and with stride 3, and
// col2im's stride-1, stride-2 and generic paths, adding and writing.
TEST_CASE("im2col and col2im equal their definitions on every path", "[oracle][kernels]") {
  Generator gen(17);
  int geometries = 0;
  for (int64_t K : {1, 2, 3, 5})
    for (int64_t stride : {1, 2, 3})
      for (int64_t pad : {0, 1, 2})
        for (int64_t H : {1, 2, 4, 7, 8})
          for (int64_t W : {1, 2, 4, 7, 8}) {
            const int64_t C = 2;
            if (H + 2 * pad < K || W + 2 * pad < K) continue;
            const int64_t HO = (H + 2 * pad - K) / stride + 1, WO = (W + 2 * pad - K) / stride + 1;
            const kernels::ConvGeom g{C, H, W, K, K, stride, pad, HO, WO};
            INFO("K " << K << " stride " << stride << " pad " << pad << " H " << H << " W " << W);
            const int64_t rows = C * K * K, cols = g.HO * g.WO;
            std::vector<float> x(C * H * W), col(rows * cols, -7.0f), ref(rows * cols);
            for (float& v : x) v = gen.normal();
            // Calls f(col index, x index or -1 when (ih, iw) is padding) for every tap.
            auto for_each_tap = [&](auto&& f) {
              for (int64_t c = 0; c < C; ++c)
                for (int64_t kh = 0; kh < K; ++kh)
                  for (int64_t kw = 0; kw < K; ++kw)
                    for (int64_t oh = 0; oh < g.HO; ++oh)
                      for (int64_t ow = 0; ow < g.WO; ++ow) {
                        const int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                        const bool in = ih >= 0 && ih < H && iw >= 0 && iw < W;
                        f(((c * K + kh) * K + kw) * cols + oh * g.WO + ow,
                          in ? (c * H + ih) * W + iw : -1);
                      }
            };
            // Definition: col[(c, kh, kw), (oh, ow)] = x[c, oh s - p + kh, ow s - p + kw], or 0.
            for_each_tap([&](int64_t k, int64_t i) { ref[k] = i >= 0 ? x[i] : 0.0f; });
            kernels::im2col(x.data(), g, col.data());
            REQUIRE(col == ref);  // a copy: exact
            // col2im is the adjoint: <im2col(x), r> = <x, col2im(r)> for any r; checked
            // element by element against the scatter-add definition, added onto a non-zero dx
            // and written over a NaN one (every element written).
            std::vector<float> r(rows * cols), dx(C * H * W, 0.5f), dx_new(C * H * W, NAN);
            std::vector<double> dref(C * H * W, 0.5);
            for (float& v : r) v = gen.normal();
            for_each_tap([&](int64_t k, int64_t i) {
              if (i >= 0) dref[i] += r[k];
            });
            kernels::col2im(r.data(), g, dx.data(), true);
            kernels::col2im(r.data(), g, dx_new.data(), false);
            for (size_t i = 0; i < dx.size(); ++i) {
              REQUIRE(dx[i] == Approx(dref[i]).margin(1e-5));
              REQUIRE(dx_new[i] == Approx(dref[i] - 0.5).margin(1e-5));
            }
            ++geometries;
          }
  CHECK(geometries > 250);
}

// Hidden (run with `build/tests/minidl_tests "[.precision]"`, about 7 s): how far float32
// Winograd F(m x m, 3 x 3) and float32 im2col + GEMM are from the naive convolution in double,
// on the five 3x3 convolutions of airbench94 (padding 1, 64 images: x = GELU of a standard
// normal like a block's input, Kaiming-normal weights, dy normal). It measures what
// docs/airbench94/README.md cites when it asks whether the Winograd arithmetic costs accuracy.
// Both errors are printed (WARN, normwise / Frobenius); the checks are the oracle's 1e-4 for
// Winograd and 1e-5 for GEMM.
TEST_CASE("Winograd and im2col + GEMM against double on airbench94's convolutions",
          "[.precision]") {
  const Geom shapes[] = {{64, 24, 64, 31, 31, 3, 1, 1},
                         {64, 64, 64, 15, 15, 3, 1, 1},
                         {64, 64, 256, 15, 15, 3, 1, 1},
                         {64, 256, 256, 7, 7, 3, 1, 1},
                         {64, 256, 256, 3, 3, 3, 1, 1}};
  Generator gen(11);
  for (const Geom& s : shapes) {
    const int64_t P = s.H * s.W, K = s.C * 9;
    const kernels::ConvGeom g{s.C, s.H, s.W, 3, 3, 1, 1, s.HO(), s.WO()};
    REQUIRE(kernels::winograd_applies(g));
    std::vector<float> x(s.N * s.C * P), w(s.CO * K), dy(s.N * s.CO * P);
    for (float& v : x) {
      const float z = gen.normal();
      v = 0.5f * z * std::erfc(-z / std::sqrt(2.0f));
    }
    for (float& v : w) v = gen.normal() * std::sqrt(2.0f / K);
    for (float& v : dy) v = gen.normal() * 1e-3f;
    const std::vector<double> y_ref = naive_conv2d_forward(x.data(), w.data(), nullptr, s);
    const std::vector<double> dw_ref = naive_conv2d_weight_grad(dy.data(), x.data(), s);
    std::vector<float> V(kernels::winograd_weight_size(s.CO, s.C)), y_wino(dy.size()),
        dw_wino(w.size(), 0.0f);
    kernels::winograd_weight_transform(V.data(), w.data(), s.CO, s.C, false);
    kernels::winograd_forward(y_wino.data(), x.data(), V.data(), s.N, g, s.CO, false);
    kernels::winograd_backward_weight(dw_wino.data(), dy.data(), x.data(), s.N, g, s.CO);
    std::vector<float> col(K * P), y_gemm(dy.size()), dw_gemm(w.size(), 0.0f);
    for (int64_t n = 0; n < s.N; ++n) {
      kernels::im2col(x.data() + n * s.C * P, g, col.data());
      kernels::gemm(false, false, s.CO, P, K, 1.0f, w.data(), col.data(), 0.0f,
                    y_gemm.data() + n * s.CO * P);
      kernels::gemm(false, true, s.CO, K, P, 1.0f, dy.data() + n * s.CO * P, col.data(), 1.0f,
                    dw_gemm.data());
    }
    WARN(s.str() << ": relative error (normwise / Frobenius): y Winograd F("
                 << kernels::kWinogradTile << ") " << rel_err(y_wino.data(), y_ref) << " / "
                 << frobenius_rel_err(y_wino.data(), y_ref) << ", GEMM "
                 << rel_err(y_gemm.data(), y_ref) << " / "
                 << frobenius_rel_err(y_gemm.data(), y_ref) << "; dw Winograd "
                 << rel_err(dw_wino.data(), dw_ref) << " / "
                 << frobenius_rel_err(dw_wino.data(), dw_ref) << ", GEMM "
                 << rel_err(dw_gemm.data(), dw_ref) << " / "
                 << frobenius_rel_err(dw_gemm.data(), dw_ref));
    CHECK(rel_err(y_wino.data(), y_ref) < 1e-4);
    CHECK(rel_err(dw_wino.data(), dw_ref) < 1e-4);
    CHECK(rel_err(y_gemm.data(), y_ref) < 1e-5);
    CHECK(rel_err(dw_gemm.data(), dw_ref) < 1e-5);
  }
}

// ops::conv2d_with_projection (a ResNet block's first convolution and its 1 x 1 projection
// shortcut from one column matrix per image) against the naive convolutions: y and yp, and the
// gradients of x (both convolutions' shares summed), weight and projection. Fused geometries
// (odd K > 1, padding K / 2, stride > 1: resnet20's downsampling, narrow and wide, odd sizes, a
// 5 x 5 kernel, stride 3) and geometries it hands to two conv2d calls. Variants: every input
// learning, with yp's gradient distinct from y's (z = y + relu(yp), z.backward(dy)); only y
// used; only yp used; frozen weights (BN-only training: x's gradient only); x frozen; two
// backward passes accumulating. Forward outputs equal two conv2d calls exactly.
TEST_CASE("conv2d_with_projection matches the naive convolutions, fused or not", "[oracle][conv]") {
  struct Case {
    int64_t N, C, O, H, W, K, s, p;
    bool fuses;
  };
  const Case cases[] = {
      {3, 16, 32, 32, 32, 3, 2, 1, true},  // resnet20's stage 2 entry (O >= 32: not narrow)
      {2, 5, 7, 9, 11, 3, 2, 1, true},     // narrow, odd sizes
      {2, 4, 6, 8, 6, 5, 2, 2, true},      // 5 x 5
      {2, 3, 16, 10, 10, 3, 3, 1, true},   // stride 3 (generic im2col / col2im)
      {2, 16, 32, 2, 2, 3, 2, 1, true},    // a single output pixel
      {2, 3, 8, 6, 6, 3, 1, 1, false},     // stride 1: two conv2d calls
      {2, 4, 8, 8, 6, 2, 2, 0, false},     // an even kernel has no center tap: two conv2d calls
  };
  enum Variant { kBoth, kYOnly, kYpOnly, kFrozenWeights, kFrozenX, kTwice };
  for (const Case& cs : cases) {
    CHECK(ops::conv2d_projection_fuses(cs.C, cs.K, cs.s, cs.p) == cs.fuses);
    const Geom g{cs.N, cs.C, cs.O, cs.H, cs.W, cs.K, cs.s, cs.p};
    const Geom gp{cs.N, cs.C, cs.O, cs.H, cs.W, 1, cs.s, 0};
    REQUIRE(gp.HO() == g.HO());
    REQUIRE(gp.WO() == g.WO());
    for (Variant v : {kBoth, kYOnly, kYpOnly, kFrozenWeights, kFrozenX, kTwice}) {
      INFO(g.str() << ", variant " << v);
      Generator gen(static_cast<uint64_t>(100 + cs.C * 7 + cs.H + v));
      const bool wg = v != kFrozenWeights, xg = v != kFrozenX;
      Tensor x = randn({g.N, g.C, g.H, g.W}, gen, 1.0f, xg);
      Tensor w = randn({g.CO, g.C, g.K, g.K}, gen, std::sqrt(2.0f / (g.C * g.K * g.K)), wg);
      Tensor wp = randn({g.CO, g.C, 1, 1}, gen, std::sqrt(2.0f / g.C), wg);
      Tensor dy = randn({g.N, g.CO, g.HO(), g.WO()}, gen, 1.0f, false);
      const int passes = v == kTwice ? 2 : 1;
      std::vector<double> dy_ref(dy.numel(), 0.0), dyp_ref(dy.numel(), 0.0);
      Tensor y, yp;
      for (int pass = 0; pass < passes; ++pass) {
        std::tie(y, yp) = ops::conv2d_with_projection(x, w, wp, g.s, g.p);
        if (v == kYOnly) {
          y.backward(dy);
          for (int64_t i = 0; i < dy.numel(); ++i) dy_ref[i] += dy.data()[i];
        } else if (v == kYpOnly) {
          yp.backward(dy);
          for (int64_t i = 0; i < dy.numel(); ++i) dyp_ref[i] += dy.data()[i];
        } else {
          ops::add(y, ops::relu(yp)).backward(dy);
          for (int64_t i = 0; i < dy.numel(); ++i) {
            dy_ref[i] += dy.data()[i];
            dyp_ref[i] += yp.data()[i] > 0.0f ? dy.data()[i] : 0.0f;
          }
        }
      }
      // Forward: exactly two conv2d calls; and the naive convolution.
      const Tensor y2 = ops::conv2d(x, w, Tensor(), g.s, g.p),
                   yp2 = ops::conv2d(x, wp, Tensor(), g.s, 0);
      CHECK(y.vec() == y2.vec());
      CHECK(yp.vec() == yp2.vec());
      CHECK(rel_err(y.data(), naive_conv2d_forward(x.data(), w.data(), nullptr, g)) < kTol);
      CHECK(rel_err(yp.data(), naive_conv2d_forward(x.data(), wp.data(), nullptr, gp)) < kTol);
      // Gradients against the naive ones of the summed output gradients.
      const std::vector<float> dyf(dy_ref.begin(), dy_ref.end()),
          dypf(dyp_ref.begin(), dyp_ref.end());
      const bool y_used = v != kYpOnly, yp_used = v != kYOnly;
      if (xg) {
        REQUIRE(x.has_grad());
        std::vector<double> dx_ref(x.numel(), 0.0);
        if (y_used) add_into(dx_ref, naive_conv2d_input_grad(dyf.data(), w.data(), g));
        if (yp_used) add_into(dx_ref, naive_conv2d_input_grad(dypf.data(), wp.data(), gp));
        CHECK(rel_err(x.grad_data(), dx_ref) < kTol);
      } else {
        CHECK_FALSE(x.has_grad());
      }
      if (wg && y_used) {
        REQUIRE(w.has_grad());
        CHECK(rel_err(w.grad_data(), naive_conv2d_weight_grad(dyf.data(), x.data(), g)) < kTol);
      } else {
        CHECK_FALSE(w.has_grad());
      }
      if (wg && yp_used) {
        REQUIRE(wp.has_grad());
        CHECK(rel_err(wp.grad_data(), naive_conv2d_weight_grad(dypf.data(), x.data(), gp)) < kTol);
      } else {
        CHECK_FALSE(wp.has_grad());
      }
    }
  }
  // A projection that is not [O, C, 1, 1] is refused, naming the op.
  Generator gen(7);
  const Tensor x = randn({1, 4, 8, 8}, gen, 1.0f, false), w = randn({6, 4, 3, 3}, gen, 1.0f, false);
  CHECK_THROWS_WITH(ops::conv2d_with_projection(x, w, randn({6, 4, 3, 3}, gen, 1.0f, false), 2, 1),
                    Catch::Contains("conv2d_with_projection") && Catch::Contains("1, 1]"));
  CHECK_THROWS_WITH(ops::conv2d_with_projection(x, w, randn({6, 5, 1, 1}, gen, 1.0f, false), 2, 1),
                    Catch::Contains("projection [C_out, 4, 1, 1]"));
}
