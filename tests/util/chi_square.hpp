// Pearson's goodness-of-fit test for the sampling tests: counts of draws against the
// probabilities they should follow.
#pragma once
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace troupe::test {

// Wilson-Hilferty: the chi-square value that df degrees of freedom exceed with
// probability 1e-4 (z = 3.719).
inline double chi_square_limit(int df) {
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + 3.719 * std::sqrt(a), 3.0);
}

// Goodness of fit of counts (n draws) to probabilities p; categories with an expected count
// under 5 are pooled. Returns (statistic, degrees of freedom).
template <class Probability>
std::pair<double, int> chi_square(const std::vector<int64_t>& counts, const std::vector<Probability>& p, int64_t n) {
  double stat = 0, pooled_expected = 0;
  int64_t pooled_count = 0;
  int categories = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = static_cast<double>(p[i]) * static_cast<double>(n);
    if (expected < 5) {
      pooled_expected += expected;
      pooled_count += counts[i];
      continue;
    }
    stat += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++categories;
  }
  if (pooled_expected >= 5) {
    stat += (pooled_count - pooled_expected) * (pooled_count - pooled_expected) / pooled_expected;
    ++categories;
  }
  return {stat, categories - 1};
}

}  // namespace troupe::test
