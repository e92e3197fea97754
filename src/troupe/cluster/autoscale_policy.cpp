#include "troupe/cluster/autoscale_policy.hpp"

#include <cstdio>

#include "troupe/model/error.hpp"

namespace troupe::cluster {

namespace {

std::string fmt(const char* format, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

}  // namespace

void validate(const autoscale_options& o) {
  auto reject = [](const std::string& flag, const std::string& allowed, const std::string& got) {
    throw error(error_code::invalid_argument, "--" + flag + " must be " + allowed + " (got " + got + ")");
  };
  if (o.min_replicas < 1 || o.min_replicas > 64) reject("min-replicas", "in [1, 64]", std::to_string(o.min_replicas));
  if (o.max_replicas < o.min_replicas || o.max_replicas > 64) {
    reject("max-replicas", "in [--min-replicas, 64] = [" + std::to_string(o.min_replicas) + ", 64]",
           std::to_string(o.max_replicas));
  }
  if (!(o.target_utilization > 0.0 && o.target_utilization <= 2.0)) {
    reject("target-utilization", "in (0, 2]", fmt("%g", o.target_utilization));
  }
  constexpr int64_t hour_ms = 3600 * 1000;
  if (o.scale_up_delay_ms < 0 || o.scale_up_delay_ms > hour_ms) {
    reject("scale-up-delay-ms", "in [0, 3600000]", std::to_string(o.scale_up_delay_ms));
  }
  if (o.scale_down_delay_ms < 0 || o.scale_down_delay_ms > hour_ms) {
    reject("scale-down-delay-ms", "in [0, 3600000]", std::to_string(o.scale_down_delay_ms));
  }
  if (!(o.scale_down_margin > 0.0 && o.scale_down_margin <= 1.0)) {
    reject("scale-down-margin", "in (0, 1]", fmt("%g", o.scale_down_margin));
  }
}

const char* to_string(scale_direction d) {
  switch (d) {
    case scale_direction::up: return "up";
    case scale_direction::down: return "down";
    case scale_direction::none: break;
  }
  return "none";
}

autoscale_policy::autoscale_policy(autoscale_options o) : options_(o) { validate(options_); }

double autoscale_policy::scale_down_threshold(int32_t n) const {
  if (n <= 1) return 0.0;
  return options_.target_utilization * options_.scale_down_margin * (n - 1) / n;
}

scale_decision autoscale_policy::observe(int64_t now_ms, const fleet_sample& sample) {
  const auto& o = options_;
  const int32_t n = sample.num_replicas;
  const double u = sample.utilization;
  if (sample.is_changing) {
    above_since_ms_ = -1;
    below_since_ms_ = -1;
    return {scale_direction::none, n, {}};
  }
  if (n < o.min_replicas) {
    above_since_ms_ = below_since_ms_ = -1;
    return {scale_direction::up, o.min_replicas,
            fmt("%d replica(s), below --min-replicas %d", n, o.min_replicas)};
  }
  if (n > o.max_replicas) {
    above_since_ms_ = below_since_ms_ = -1;
    return {scale_direction::down, n - 1, fmt("%d replica(s), above --max-replicas %d", n, o.max_replicas)};
  }
  // An empty denominator (no replica ready yet) says nothing about the load.
  if (sample.num_ready <= 0) {
    above_since_ms_ = below_since_ms_ = -1;
    return {scale_direction::none, n, {}};
  }

  const bool is_above = u > o.target_utilization;
  above_since_ms_ = is_above ? (above_since_ms_ < 0 ? now_ms : above_since_ms_) : -1;
  const double low = scale_down_threshold(n);
  const bool is_below = n > o.min_replicas && u < low;
  below_since_ms_ = is_below ? (below_since_ms_ < 0 ? now_ms : below_since_ms_) : -1;

  if (is_above && n < o.max_replicas && now_ms - above_since_ms_ >= o.scale_up_delay_ms) {
    const int64_t held_ms = now_ms - above_since_ms_;
    above_since_ms_ = -1;
    return {scale_direction::up, n + 1,
            fmt("utilization %.2f above the target %.2f for %lld ms (delay %lld ms) with %d replica(s)", u,
                o.target_utilization, static_cast<long long>(held_ms), static_cast<long long>(o.scale_up_delay_ms),
                n)};
  }
  if (is_below && now_ms - below_since_ms_ >= o.scale_down_delay_ms) {
    const int64_t held_ms = now_ms - below_since_ms_;
    below_since_ms_ = -1;
    return {scale_direction::down, n - 1,
            fmt("utilization %.2f below %.2f (target %.2f x margin %.2f x %d/%d) for %lld ms (delay %lld ms)", u, low,
                o.target_utilization, o.scale_down_margin, n - 1, n, static_cast<long long>(held_ms),
                static_cast<long long>(o.scale_down_delay_ms))};
  }
  return {scale_direction::none, n, {}};
}

}  // namespace troupe::cluster
