// Percentiles by nearest rank: the smallest sample with at least p% of samples at or below
// it, so every reported percentile is a latency that was observed.
#include <doctest/doctest.h>

#include <stdexcept>
#include <vector>

#include "stats.hpp"

using namespace troupe::load;

TEST_CASE("nearest-rank percentiles of 1 to 10") {
  const std::vector<double> v = {7, 3, 10, 1, 5, 2, 9, 4, 8, 6};
  CHECK(percentile(v, 0) == 1);
  CHECK(percentile(v, 10) == 1);   // ceil(1.0) = rank 1
  CHECK(percentile(v, 11) == 2);   // ceil(1.1) = rank 2
  CHECK(percentile(v, 50) == 5);   // rank 5, not the interpolated 5.5
  CHECK(percentile(v, 90) == 9);
  CHECK(percentile(v, 99) == 10);  // with 10 samples p99 is the maximum
  CHECK(percentile(v, 100) == 10);
}

TEST_CASE("p99 of 1 to 100 is 99 and p99 of 1 to 1000 is 990") {
  std::vector<double> hundred, thousand;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i);
  for (int i = 1; i <= 1000; ++i) thousand.push_back(i);
  CHECK(percentile(hundred, 99) == 99);
  CHECK(percentile(hundred, 50) == 50);
  CHECK(percentile(thousand, 99) == 990);
  CHECK(percentile(thousand, 99.9) == 999);  // 99.9 / 100 * 1000 is 999.0000000000001 in doubles
}

TEST_CASE("a single sample is every percentile") {
  CHECK(percentile({42}, 0) == 42);
  CHECK(percentile({42}, 50) == 42);
  CHECK(percentile({42}, 99) == 42);
}

TEST_CASE("percentile refuses no samples and p outside 0 to 100") {
  CHECK_THROWS_AS(percentile({}, 50), std::invalid_argument);
  CHECK_THROWS_AS(percentile({1, 2}, 101), std::invalid_argument);
  CHECK_THROWS_AS(percentile({1, 2}, -1), std::invalid_argument);
}

TEST_CASE("summarize gives count, mean, min, p50, p90, p99 and max") {
  std::vector<double> v;
  for (int i = 20; i >= 1; --i) v.push_back(i * 10.0);
  const summary s = summarize(v);
  CHECK(s.count == 20);
  CHECK(s.mean == doctest::Approx(105));
  CHECK(s.min == 10);
  CHECK(s.p50 == 100);
  CHECK(s.p90 == 180);
  CHECK(s.p99 == 200);
  CHECK(s.max == 200);
}

TEST_CASE("summarize of nothing is all zeros with count 0") {
  const summary s = summarize({});
  CHECK(s.count == 0);
  CHECK(s.p99 == 0);
}
