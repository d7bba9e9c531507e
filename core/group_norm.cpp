// minidl — group_norm and layer_norm forward and backward: normalization of each sample on its
// own, with no batch statistics and no running buffers (the same in train and eval mode).
//
// Shapes in core/ops.hpp's letters. Both ops normalize rows of D values, each row with its own
// mean and variance:
//   group_norm: x [N, C, S] seen as [N, G, C / G, S]; row (n, g) of the NG rows holds the
//     Cg = C / G channels of group g of image n, D = Cg * S values; weight (gamma) and bias
//     (beta) [C], one per channel.
//   layer_norm: x [N, D], D = prod(normalized_shape) trailing values, N = numel / D rows (the
//     leading dimensions flattened); weight, bias [D], one per position in the row.
// Forward (Wu & He 2018, eq. 1-2, with eq. 6's affine per channel and eq. 7's groups; Ba, Kiros
// & Hinton 2016, eq. 3-4; torch.nn.functional.group_norm and layer_norm):
//   mean = sum(x) / D,  var = sum((x - mean)^2) / D          (per row, biased)
//   inv_std = 1 / sqrt(var + eps),  x_hat = (x - mean) * inv_std
//   y = gamma * x_hat + beta        (gamma, beta of the value's channel, or of its position)
// Backward of y = gamma * x_hat + beta, the statistics those of the row (g = dy * gamma):
//   dbeta += sum(dy),  dgamma += sum(dy * x_hat)   (over every value that parameter scales)
//   dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))   (means over the row's D values)
// Accuracy: the statistics are sums of x - shift in double, the shift being the row's first
// value; the forward saves shift, mean - shift and inv_std (RowStatistics), and every x_hat is
// ((x - shift) - (mean - shift)) * inv_std. x - shift is exact in float when x is within a factor
// 2 of the shift (Sterbenz), so a row with |mean| >> std keeps its precision (a float x - mean
// would lose it in the rounding of mean).
// Determinism: every sum runs in a fixed order that depends on the sizes only (8 lanes in
// double, lane_sums), and each row is computed by one thread: a sample gives the same bits
// alone as inside a batch, with any number of threads.
// The op template (llm.c): group_norm_forward / group_norm_backward and layer_norm_forward /
// layer_norm_backward are sibling free functions on raw arrays, outputs first; the autograd
// closures only fetch the gradient buffers and call the backward.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"

namespace minidl::ops {

using detail::check;
using detail::GradOut;

namespace {

/// What both forwards save for their backward, per row r of D values (besides the input x).
struct RowStatistics {
  std::vector<float> shift;    ///< [rows]: the row's first value
  std::vector<float> mean;     ///< [rows]: mean - shift (small: the row's mean around its shift)
  std::vector<float> inv_std;  ///< [rows]: 1 / sqrt(var + eps), var the row's biased variance
};

/// (sum_i a_i, sum_i b_i) over i < n, where terms(i) returns the pair (a_i, b_i), in double: the
/// terms go to 8 lanes (term i of each block of 8 to lane i % 8, the tail to lanes 0, 1, ...),
/// added lane by lane at the end. The order of the additions depends on n alone, so the same
/// values give the same bits wherever they sit in memory (alone or inside a batch).
template <class Terms>
inline std::pair<double, double> lane_sums(int64_t n, Terms terms) {
  double l1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, l2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const std::pair<double, double> t = terms(i + j);
      l1[j] += t.first;
      l2[j] += t.second;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const std::pair<double, double> t = terms(i);
    l1[j] += t.first;
    l2[j] += t.second;
  }
  double s1 = 0.0, s2 = 0.0;
  for (int j = 0; j < 8; ++j) {
    s1 += l1[j];
    s2 += l2[j];
  }
  return {s1, s2};
}

/// Row r's statistics from its D > 0 values p[0..D): shift = p[0], then
///   mean - shift = sum(p - shift) / D,  var = sum((p - shift)^2) / D - (mean - shift)^2
/// (in double; clamped at 0), into stats.shift[r], stats.mean[r], stats.inv_std[r].
inline void row_statistics(RowStatistics& stats, int64_t r, const float* p, int64_t D, float eps) {
  const float shift = p[0];
  const auto [s1, s2] = lane_sums(D, [p, shift](int64_t i) {
    const double d = static_cast<double>(p[i] - shift);
    return std::pair<double, double>(d, d * d);
  });
  const double dmean = s1 / static_cast<double>(D);                               // mean - shift
  const double var = std::max(0.0, s2 / static_cast<double>(D) - dmean * dmean);  // biased
  stats.shift[r] = shift;
  stats.mean[r] = static_cast<float>(dmean);
  stats.inv_std[r] = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
}

/// Sizes stats for `rows` rows.
void resize(RowStatistics& stats, int64_t rows) {
  stats.shift.assign(static_cast<size_t>(rows), 0.0f);
  stats.mean.assign(static_cast<size_t>(rows), 0.0f);
  stats.inv_std.assign(static_cast<size_t>(rows), 0.0f);
}

// ---- group_norm -----------------------------------------------------------------------------

/// y [N, C, S] = gamma[c] * x_hat + beta[c], x_hat normalized over each row (n, g) of the
/// D = C / G * S values of the channels of group g of image n; fills stats [N * G].
/// x [N, C, S]; gamma, beta [C] may be null (1 and 0). G divides C (checked by the caller).
void group_norm_forward(float* y, RowStatistics& stats, const float* x, const float* gamma,
                        const float* beta, int64_t N, int64_t C, int64_t S, int64_t G, float eps) {
  const int64_t Cg = C / G, D = Cg * S, NG = N * G;
  resize(stats, NG);
  if (D == 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < NG; ++r) {
    const float* p = x + r * D;  // row (n, g): channels g Cg .. (g + 1) Cg - 1 of image n
    row_statistics(stats, r, p, D, eps);
    const float shift = stats.shift[r], m = stats.mean[r], is = stats.inv_std[r];
    for (int64_t k = 0; k < Cg; ++k) {
      const int64_t c = (r % G) * Cg + k;
      // y = gamma (x - mean) inv_std + beta = (x - shift) scale + (beta - (mean - shift) scale)
      const float scale = (gamma ? gamma[c] : 1.0f) * is;
      const float offset = (beta ? beta[c] : 0.0f) - m * scale;
      const float* pc = p + k * S;
      float* q = y + r * D + k * S;
      for (int64_t i = 0; i < S; ++i) q[i] = (pc[i] - shift) * scale + offset;
    }
  }
}

/// Gradients of group_norm_forward: dx [N, C, S] (= when dx.fresh, else +=; skipped when null),
/// dgamma, dbeta [C] (+=; each may be null) from dy [N, C, S], the forward's stats [N * G], x and
/// gamma [C] (null: 1).
///   From y = gamma x_hat + beta:  dbeta[c] += sum_{n, s} dy,  dgamma[c] += sum_{n, s} dy x_hat
///   From x_hat = (x - mean) inv_std with the row's mean and var (g = dy gamma[c]):
///     dx = inv_std (g - mean_row(g) - x_hat mean_row(g x_hat))
/// The per-(n, c) sums of dy and dy x_hat, in double, serve both: dgamma and dbeta add them
/// over n, and the row's sums of g and g x_hat are sum_c gamma[c] times them.
void group_norm_backward(GradOut dx, float* dgamma, float* dbeta, const float* dy,
                         const RowStatistics& stats, const float* x, const float* gamma, int64_t N,
                         int64_t C, int64_t S, int64_t G) {
  const int64_t Cg = C / G, D = Cg * S, NG = N * G;
  if (D == 0) return;
  std::vector<double> sums(static_cast<size_t>(N * C * 2));  // [N, C, 2]: sum dy, sum dy x_hat
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < NG; ++r) {
    const float shift = stats.shift[r], m = stats.mean[r], is = stats.inv_std[r];
    for (int64_t k = 0; k < Cg; ++k) {
      const int64_t off = r * D + k * S;  // channel (r % G) Cg + k of image r / G
      const float *pc = x + off, *gc = dy + off;
      const auto [s_dy, s_dy_xhat] = lane_sums(S, [=](int64_t i) {
        const float xh = ((pc[i] - shift) - m) * is;  // x_hat
        return std::pair<double, double>(gc[i], static_cast<double>(gc[i]) * xh);
      });
      sums[static_cast<size_t>(off / S) * 2] = s_dy;  // off / S = n C + c
      sums[static_cast<size_t>(off / S) * 2 + 1] = s_dy_xhat;
    }
  }
  if (dgamma || dbeta) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      double s_dy = 0.0, s_dy_xhat = 0.0;
      for (int64_t n = 0; n < N; ++n) {  // images in order
        s_dy += sums[static_cast<size_t>(n * C + c) * 2];
        s_dy_xhat += sums[static_cast<size_t>(n * C + c) * 2 + 1];
      }
      if (dbeta) dbeta[c] += static_cast<float>(s_dy);
      if (dgamma) dgamma[c] += static_cast<float>(s_dy_xhat);
    }
  }
  if (!dx.data) return;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < NG; ++r) {
    const float shift = stats.shift[r], m = stats.mean[r], is = stats.inv_std[r];
    const int64_t c0 = (r % G) * Cg, nc0 = (r / G) * C + c0;
    double s_g = 0.0, s_g_xhat = 0.0;  // sum(g), sum(g x_hat) over the row, g = dy gamma
    for (int64_t k = 0; k < Cg; ++k) {
      const double w = gamma ? gamma[c0 + k] : 1.0;
      s_g += w * sums[static_cast<size_t>(nc0 + k) * 2];
      s_g_xhat += w * sums[static_cast<size_t>(nc0 + k) * 2 + 1];
    }
    const float mean_g = static_cast<float>(s_g / static_cast<double>(D));
    const float mean_g_xhat = static_cast<float>(s_g_xhat / static_cast<double>(D));
    for (int64_t k = 0; k < Cg; ++k) {
      const float w = gamma ? gamma[c0 + k] : 1.0f;
      const int64_t off = r * D + k * S;
      const float *pc = x + off, *gc = dy + off;
      float* d = dx.data + off;
      for (int64_t i = 0; i < S; ++i) {
        const float xh = ((pc[i] - shift) - m) * is;
        const float v = is * (gc[i] * w - mean_g - xh * mean_g_xhat);
        d[i] = dx.fresh ? v : d[i] + v;
      }
    }
  }
}

// ---- layer_norm -----------------------------------------------------------------------------

/// y [N, D] = gamma[d] * x_hat + beta[d], x_hat normalized over each row of D values; fills
/// stats [N]. x [N, D]; gamma, beta [D] may be null (1 and 0).
void layer_norm_forward(float* y, RowStatistics& stats, const float* x, const float* gamma,
                        const float* beta, int64_t N, int64_t D, float eps) {
  resize(stats, N);
  if (D == 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const float* p = x + r * D;
    row_statistics(stats, r, p, D, eps);
    const float shift = stats.shift[r], m = stats.mean[r], is = stats.inv_std[r];
    float* q = y + r * D;
    for (int64_t d = 0; d < D; ++d) {
      const float xh = ((p[d] - shift) - m) * is;  // x_hat = (x - mean) inv_std
      q[d] = (gamma ? gamma[d] : 1.0f) * xh + (beta ? beta[d] : 0.0f);
    }
  }
}

/// Gradients of layer_norm_forward: dx [N, D] (= when dx.fresh, else +=; skipped when null),
/// dgamma, dbeta [D] (+=; each may be null) from dy [N, D], the forward's stats [N], x and
/// gamma [D] (null: 1).
///   From y = gamma x_hat + beta:  dbeta[d] += sum_r dy,  dgamma[d] += sum_r dy x_hat
///   From x_hat = (x - mean) inv_std with the row's mean and var (g = dy gamma[d]):
///     dx = inv_std (g - mean_row(g) - x_hat mean_row(g x_hat))
void layer_norm_backward(GradOut dx, float* dgamma, float* dbeta, const float* dy,
                         const RowStatistics& stats, const float* x, const float* gamma, int64_t N,
                         int64_t D) {
  if (D == 0) return;
  if (dgamma || dbeta) {
    constexpr int64_t kBlock = 64;  // columns per task: rows are read in order, a block at a time
    const int64_t blocks = (D + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t d0 = b * kBlock, d1 = std::min(D, d0 + kBlock);
      double s_dy[kBlock] = {}, s_dy_xhat[kBlock] = {};
      for (int64_t r = 0; r < N; ++r) {  // rows in order
        const float shift = stats.shift[r], m = stats.mean[r], is = stats.inv_std[r];
        const float *p = x + r * D, *g = dy + r * D;
        for (int64_t d = d0; d < d1; ++d) {
          const float xh = ((p[d] - shift) - m) * is;
          s_dy[d - d0] += g[d];
          s_dy_xhat[d - d0] += static_cast<double>(g[d]) * xh;
        }
      }
      for (int64_t d = d0; d < d1; ++d) {
        if (dbeta) dbeta[d] += static_cast<float>(s_dy[d - d0]);
        if (dgamma) dgamma[d] += static_cast<float>(s_dy_xhat[d - d0]);
      }
    }
  }
  if (!dx.data) return;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const float shift = stats.shift[r], m = stats.mean[r], is = stats.inv_std[r];
    const float *p = x + r * D, *g = dy + r * D;
    const auto [s_g, s_g_xhat] = lane_sums(D, [=](int64_t d) {
      const float xh = ((p[d] - shift) - m) * is;
      const double gd = static_cast<double>(g[d]) * (gamma ? gamma[d] : 1.0f);
      return std::pair<double, double>(gd, gd * xh);
    });
    const float mean_g = static_cast<float>(s_g / static_cast<double>(D));
    const float mean_g_xhat = static_cast<float>(s_g_xhat / static_cast<double>(D));
    float* q = dx.data + r * D;
    for (int64_t d = 0; d < D; ++d) {
      const float xh = ((p[d] - shift) - m) * is;
      const float v = is * (g[d] * (gamma ? gamma[d] : 1.0f) - mean_g - xh * mean_g_xhat);
      q[d] = dx.fresh ? v : q[d] + v;
    }
  }
}

/// "op: expected eps >= 0, got ..." unless eps is a finite number >= 0.
void check_eps(const char* op, float eps) {
  if (!(eps >= 0.0f) || !std::isfinite(eps)) {
    throw std::invalid_argument(std::string(op) + ": expected eps >= 0, got " +
                                std::to_string(eps));
  }
}

}  // namespace

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias,
                  float eps) {
  profiler::Scope _prof("group_norm");
  check(x.dim() >= 2, "group_norm", "input [N, C, *] (at least 2 dimensions)", x);
  const int64_t N = x.size(0), C = x.size(1), G = num_groups;
  int64_t S = 1;  // values per channel and image: the product of the dimensions after C
  for (int64_t i = 2; i < x.dim(); ++i) S *= x.size(i);
  if (G < 1 || C % G != 0) {
    throw std::invalid_argument(
        "group_norm: expected num_groups >= 1 dividing the channel count, got num_groups " +
        std::to_string(G) + " and C = " + std::to_string(C) + " (input shape " +
        shape_str(x.shape()) + ")");
  }
  const std::string c_shape =
      "[" + std::to_string(C) + "] (one per channel of the input " + shape_str(x.shape()) + ")";
  if (weight.defined())
    check(weight.dim() == 1 && weight.size(0) == C, "group_norm", "weight " + c_shape, weight);
  if (bias.defined())
    check(bias.dim() == 1 && bias.size(0) == C, "group_norm", "bias " + c_shape, bias);
  check_eps("group_norm", eps);

  RowStatistics stats;
  Tensor y = Tensor::empty(x.shape());
  group_norm_forward(y.mutable_data(), stats, x.data(), weight.defined() ? weight.data() : nullptr,
                     bias.defined() ? bias.data() : nullptr, N, C, S, G, eps);
  if (!needs_graph({&x, &weight, &bias})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias},
      [x, weight, bias, out, stats = std::move(stats), N, C, S, G]() {
        group_norm_backward(detail::grad_for_write_or_null(x), detail::grad_or_null(weight),
                            detail::grad_or_null(bias), out->grad.data(), stats, x.data(),
                            weight.defined() ? weight.data() : nullptr, N, C, S, G);
      },
      "group_norm");
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                  const Tensor& bias, float eps) {
  profiler::Scope _prof("layer_norm");
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  if (k == 0) {
    throw std::invalid_argument(
        "layer_norm: expected a normalized_shape of at least one dimension, got []");
  }
  bool trailing = x.dim() >= k;
  for (int64_t i = 0; trailing && i < k; ++i)
    trailing = x.size(x.dim() - k + i) == normalized_shape[static_cast<size_t>(i)];
  const std::string want = shape_str(normalized_shape) + " (normalized_shape)";
  check(trailing, "layer_norm", "input whose trailing dimensions are " + want, x);
  if (weight.defined())
    check(weight.shape() == normalized_shape, "layer_norm", "weight of shape " + want, weight);
  if (bias.defined())
    check(bias.shape() == normalized_shape, "layer_norm", "bias of shape " + want, bias);
  check_eps("layer_norm", eps);
  const int64_t D = shape_numel(normalized_shape);
  int64_t N = 1;  // rows: the product of the leading dimensions
  for (int64_t i = 0; i < x.dim() - k; ++i) N *= x.size(i);

  RowStatistics stats;
  Tensor y = Tensor::empty(x.shape());
  layer_norm_forward(y.mutable_data(), stats, x.data(), weight.defined() ? weight.data() : nullptr,
                     bias.defined() ? bias.data() : nullptr, N, D, eps);
  if (!needs_graph({&x, &weight, &bias})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias},
      [x, weight, bias, out, stats = std::move(stats), N, D]() {
        layer_norm_backward(detail::grad_for_write_or_null(x), detail::grad_or_null(weight),
                            detail::grad_or_null(bias), out->grad.data(), stats, x.data(),
                            weight.defined() ? weight.data() : nullptr, N, D);
      },
      "layer_norm");
  return y;
}

}  // namespace minidl::ops
