// minidl tests — checks that random draws follow the distribution they are meant to.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <vector>

namespace minidl::testing {

/// The Kolmogorov-Smirnov statistic of `values` against U[0, 1): the largest distance between
/// their empirical distribution function and F(x) = x.
inline double ks_uniform01(std::vector<float> values) {
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  double d = 0.0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double x = values[i];
    d = std::max({d, static_cast<double>(i + 1) / n - x, x - static_cast<double>(i) / n});
  }
  return d;
}

/// Checks that `values` (at least 200) look like U[0, 1) draws: all in [0, 1); both ends
/// reached (min < 0.05, max > 0.95); mean within 0.05 of 1/2 (about 5 standard errors at
/// n = 200); and the Kolmogorov-Smirnov statistic below its 1% critical value 1.63 / sqrt(n).
/// U[0.3, 0.7), say, fails the ends, and its KS statistic is 0.3.
inline void check_uniform01(const std::vector<float>& values) {
  REQUIRE(values.size() >= 200);
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  double sum = 0.0;
  for (float v : values) sum += v;
  const double n = static_cast<double>(values.size());
  INFO(values.size() << " values in [" << *lo << ", " << *hi << "], mean " << sum / n);
  CHECK(*lo >= 0.0f);
  CHECK(*hi < 1.0f);
  CHECK(*lo < 0.05f);
  CHECK(*hi > 0.95f);
  CHECK(std::abs(sum / n - 0.5) < 0.05);
  CHECK(ks_uniform01(values) < 1.63 / std::sqrt(n));
}

}  // namespace minidl::testing
