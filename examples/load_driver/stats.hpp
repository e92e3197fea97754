// Percentiles and summaries of latency samples.
//
// Definition (nearest rank): the p-th percentile of n samples is the smallest sample such
// that at least p% of the samples are <= it, i.e. sorted[ceil(p/100 * n) - 1], and the
// minimum for p = 0. It is always a latency that was observed, never an interpolation
// between two; with few samples p99 is the maximum.
#pragma once
#include <cstddef>
#include <vector>

namespace troupe::load {

// Nearest-rank percentile of samples (need not be sorted). p in [0, 100]; samples must not
// be empty.
double percentile(std::vector<double> samples, double p);
// The same on samples already sorted ascending.
double percentile_sorted(const std::vector<double>& sorted, double p);

struct summary {
  size_t count = 0;
  double mean = 0;
  double min = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

// All zeros with count 0 when samples is empty.
summary summarize(std::vector<double> samples);

}  // namespace troupe::load
