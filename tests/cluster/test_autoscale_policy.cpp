// The autoscaler's decision rule on synthetic load histories: sustained high load adds a
// replica after the delay, a blip does nothing, sustained low load drains one, the count
// stays in [min, max], and a change under way holds the next one (cooldown).
#include <doctest/doctest.h>

#include <vector>

#include "troupe/cluster/autoscale_policy.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using namespace troupe::cluster;

namespace {

autoscale_options opts(int32_t min, int32_t max) {
  autoscale_options o;
  o.min_replicas = min;
  o.max_replicas = max;
  o.target_utilization = 0.7;
  o.scale_up_delay_ms = 1000;
  o.scale_down_delay_ms = 3000;
  o.scale_down_margin = 0.8;
  return o;
}

fleet_sample fleet(int32_t n, double u, bool changing = false) { return {n, n, u, changing}; }

// Feeds a sample every 100 ms from t0 for duration_ms; returns the first non-none decision
// and sets at_ms to its time (-1 and none when there was none).
scale_decision feed(autoscale_policy& p, int64_t t0, int64_t duration_ms, const fleet_sample& s, int64_t& at_ms) {
  at_ms = -1;
  for (int64_t t = t0; t <= t0 + duration_ms; t += 100) {
    auto d = p.observe(t, s);
    if (d.direction != scale_direction::none) {
      at_ms = t;
      return d;
    }
  }
  return {};
}

}  // namespace

TEST_CASE("autoscale policy: sustained high load adds one replica once the delay has passed") {
  autoscale_policy p(opts(1, 3));
  int64_t at = 0;
  const auto d = feed(p, 0, 5000, fleet(1, 0.9), at);
  CHECK(d.direction == scale_direction::up);
  CHECK(d.desired == 2);
  CHECK(at == 1000);
  CHECK(d.reason.find("0.90") != std::string::npos);
}

TEST_CASE("autoscale policy: a blip shorter than the delay does nothing") {
  autoscale_policy p(opts(1, 3));
  int64_t at = 0;
  CHECK(feed(p, 0, 900, fleet(1, 3.0), at).direction == scale_direction::none);   // 0.9 s high
  CHECK(feed(p, 1000, 200, fleet(1, 0.3), at).direction == scale_direction::none);  // back to normal
  CHECK(feed(p, 1300, 900, fleet(1, 3.0), at).direction == scale_direction::none);  // the timer restarted
}

TEST_CASE("autoscale policy: sustained low load drains one replica after the scale-down delay") {
  autoscale_policy p(opts(1, 3));
  int64_t at = 0;
  const auto d = feed(p, 0, 10000, fleet(3, 0.1), at);
  CHECK(d.direction == scale_direction::down);
  CHECK(d.desired == 2);
  CHECK(at == 3000);
}

TEST_CASE("autoscale policy: hysteresis: no scale-down when the others would go above the target") {
  autoscale_policy p(opts(1, 3));
  int64_t at = 0;
  // 2 replicas at 0.5 (below the target 0.7): one alone would be at 1.0, so stay.
  CHECK(feed(p, 0, 10000, fleet(2, 0.5), at).direction == scale_direction::none);
  // At 0.25 one alone would be at 0.5 < 0.7 * 0.8: drain one.
  CHECK(p.scale_down_threshold(2) == doctest::Approx(0.7 * 0.8 / 2));
  CHECK(feed(p, 20000, 10000, fleet(2, 0.25), at).direction == scale_direction::down);
}

TEST_CASE("autoscale policy: the count stays within [min, max]") {
  autoscale_policy p(opts(2, 3));
  int64_t at = 0;
  CHECK(feed(p, 0, 10000, fleet(3, 5.0), at).direction == scale_direction::none);  // at max
  CHECK(feed(p, 20000, 10000, fleet(2, 0.0), at).direction == scale_direction::none);  // at min
  // Below min (at start, or a replica died): up to min at once, whatever the load.
  auto d = p.observe(40000, fleet(0, 0.0));
  CHECK(d.direction == scale_direction::up);
  CHECK(d.desired == 2);
  d = p.observe(40100, fleet(4, 0.0));
  CHECK(d.direction == scale_direction::down);
  CHECK(d.desired == 3);
}

TEST_CASE("autoscale policy: a change under way holds decisions and restarts the delay (cooldown)") {
  autoscale_policy p(opts(1, 3));
  int64_t at = 0;
  CHECK(feed(p, 0, 1000, fleet(1, 0.9), at).direction == scale_direction::up);
  // The new replica warms up for 2 s while the load stays high: nothing more.
  CHECK(feed(p, 1100, 2000, fleet(2, 0.9, /*changing=*/true), at).direction == scale_direction::none);
  // Once it is ready, the delay counts from there.
  const auto d = feed(p, 3200, 5000, fleet(2, 0.9), at);
  CHECK(d.direction == scale_direction::up);
  CHECK(d.desired == 3);
  CHECK(at == 4200);
}

TEST_CASE("autoscale policy: no ready replica says nothing about the load") {
  autoscale_policy p(opts(1, 3));
  int64_t at = 0;
  CHECK(feed(p, 0, 5000, fleet_sample{1, 0, 0.0, false}, at).direction == scale_direction::none);
}

TEST_CASE("autoscale policy: options out of range are refused, naming the flag") {
  auto o = opts(1, 3);
  o.max_replicas = 0;
  CHECK_THROWS_WITH_AS(autoscale_policy{o}, doctest::Contains("--max-replicas"), error);
  o = opts(0, 3);
  CHECK_THROWS_WITH_AS(autoscale_policy{o}, doctest::Contains("--min-replicas"), error);
  o = opts(1, 3);
  o.target_utilization = 0;
  CHECK_THROWS_WITH_AS(autoscale_policy{o}, doctest::Contains("--target-utilization"), error);
  o = opts(1, 3);
  o.scale_up_delay_ms = -1;
  CHECK_THROWS_WITH_AS(autoscale_policy{o}, doctest::Contains("--scale-up-delay-ms"), error);
}
