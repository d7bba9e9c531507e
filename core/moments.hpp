// minidl — Moments: count, mean and variance of a stream of floats, accumulated in double.
// The one place outside the BatchNorm op where a mean and a variance are computed
// (recalibrate-bn's per-channel population statistics, bn-stats' summaries, the probes'
// distributions), and Chan's merge of two groups' statistics (chan_merge), which synchronized
// and exact BatchNorm use. The BatchNorm op itself (core/norm.cpp) keeps its own vectorized
// one-pass sums around a shift: it runs on every training step, and its float partial sums are part
// of what the tests compare with PyTorch.
//
//   mean = sum / n,  variance = (sum_sq - n mean^2) / (n - 1)  (unbiased; / n when biased)
// In double, the cancellation of sum_sq - n mean^2 costs about 1e-16 * mean^2 / variance
// relative, negligible for activations (|mean| / std below 1e4).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace minidl {

struct Moments {
  int64_t count = 0;
  double sum = 0.0, sum_sq = 0.0;

  /// Adds n values x[0], x[stride], ..., x[(n - 1) * stride].
  void add(const float* x, int64_t n, int64_t stride = 1) {
    double s1 = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i * stride];
      s1 += v;
      s2 += v * v;
    }
    sum += s1;
    sum_sq += s2;
    count += n;
  }
  /// 0 when no value was added.
  double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
  /// Unbiased (n - 1) or biased (n) variance, clamped at 0; 0 for fewer than 2 (unbiased) or
  /// 1 (biased) values.
  double variance(bool unbiased) const {
    const double n = static_cast<double>(count), d = unbiased ? n - 1.0 : n;
    if (d <= 0.0) return 0.0;
    return std::max(0.0, (sum_sq - n * mean() * mean()) / d);
  }
};

/// Chan, Golub & LeVeque (1979), the pairwise update: merges a group of nb values with mean mb
/// and M2 = sum((x - mb)^2) = m2b into (n, mean, m2), the count, mean and M2 of the values so
/// far. With total = n + nb and delta = mb - mean: mean += delta nb / total, m2 += m2b + delta^2
/// n nb / total. Synchronized BatchNorm merges processes with it, exact BatchNorm images.
inline void chan_merge(double& n, double& mean, double& m2, double nb, double mb, double m2b) {
  const double total = n + nb, delta = mb - mean;
  mean += delta * nb / total;
  m2 += m2b + delta * delta * n * nb / total;
  n = total;
}

}  // namespace minidl
