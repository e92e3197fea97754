// A thread-safe registry of Prometheus metrics (counters, gauges, histograms with fixed
// buckets) and their text exposition format. The engine feeds its troupe_* metrics from
// actor threads (engine/serving_metrics.hpp); the front door registers its own in the same
// registry; an HTTP thread renders /metrics without a message round-trip.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {

// (label name, label value) pairs; a family's metrics all use the same names in one order.
enum class metric_type { counter, gauge, histogram };
const char* to_string(metric_type type);

using metric_labels = std::vector<std::pair<std::string, std::string>>;

// One line of the text exposition as a value: a histogram gives name_bucket (with its le
// label last), name_sum and name_count samples. What metrics_registry::samples() returns and
// what parse_prometheus_text (prometheus_text.hpp) reads back.
struct metric_sample {
  std::string name;
  metric_labels labels;
  double value = 0.0;
  bool operator==(const metric_sample&) const = default;
};

// Only goes up. Any thread; lock-free.
class counter_metric {
 public:
  void inc(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Goes up and down, or is set. Any thread; lock-free.
class gauge_metric {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void dec(double amount = 1.0) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets (upper bounds inclusive, Prometheus' `le`), plus
// their sum. Any thread; lock-free: an observation is a binary search and two atomic adds.
class histogram_metric {
 public:
  // bounds: finite and strictly increasing (the +Inf bucket is implicit). Throws
  // troupe::error(invalid_argument) otherwise.
  explicit histogram_metric(std::vector<double> bounds);

  // NaN is ignored: it would poison the sum and belongs in no bucket.
  void observe(double value);

  struct snapshot {
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf (== count)
    double sum = 0.0;
    uint64_t count = 0;
  };
  // Taken while other threads observe: buckets and count always agree with each other;
  // the sum may lag or lead them by the observations in progress.
  snapshot read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; +Inf last
  std::atomic<double> sum_{0.0};
};

// Bucket bounds start, start*factor, ... (count of them); start > 0, factor > 1.
std::vector<double> exponential_buckets(double start, double factor, int count);

// Prometheus text-format escaping: label values escape \ " and newline; help escapes \ and newline.
std::string escape_label_value(std::string_view value);
std::string escape_help(std::string_view help);
// A sample value as the text format writes it: shortest round-trip decimal, +Inf, -Inf, NaN.
std::string format_metric_value(double value);

class metrics_registry {
 public:
  metrics_registry() = default;
  metrics_registry(const metrics_registry&) = delete;
  metrics_registry& operator=(const metrics_registry&) = delete;

  // The metric with this name and label values, created with its family on first use;
  // later calls with the same name and labels return the same pointer, valid as long as
  // the registry. Any thread (takes the registry's mutex: keep the pointer on hot paths).
  // Throws troupe::error(invalid_argument) for a malformed metric or label name, label
  // names that differ from the family's, or a name already registered as another type
  // (or, for a histogram, with other bounds).
  counter_metric* counter(const std::string& name, const std::string& help, const metric_labels& labels = {});
  gauge_metric* gauge(const std::string& name, const std::string& help, const metric_labels& labels = {});
  histogram_metric* histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                              const metric_labels& labels = {});

  // Every family in name order, each with # HELP and # TYPE lines, then its metrics in
  // label-value order (histograms as _bucket{le=...} cumulative, _sum and _count). Any thread.
  std::string render_prometheus() const;
  // The same series as render_prometheus, in the same order, as values (no text to format
  // and parse back). Any thread; holds the mutex for one walk of the registry.
  std::vector<metric_sample> samples() const;

 private:
  struct family {
    metric_type type = metric_type::counter;
    std::string help;
    std::vector<std::string> label_names;
    std::vector<double> bounds;  // histograms only
    std::map<std::vector<std::string>, std::unique_ptr<counter_metric>> counters;  // by label values
    std::map<std::vector<std::string>, std::unique_ptr<gauge_metric>> gauges;
    std::map<std::vector<std::string>, std::unique_ptr<histogram_metric>> histograms;
  };

  // Finds or creates the family (checking type, labels and bounds); returns the label values.
  std::pair<family*, std::vector<std::string>> family_for(const std::string& name, const std::string& help,
                                                          metric_type type, const metric_labels& labels,
                                                          const std::vector<double>& bounds);

  mutable std::mutex mutex_;
  std::map<std::string, family> families_;
};

}  // namespace troupe
