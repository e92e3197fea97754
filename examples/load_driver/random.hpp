// The driver's random numbers: splitmix64 and distributions written out here, so that one
// seed gives the same workload on every platform (std:: distributions differ by library).
#pragma once
#include <cmath>
#include <cstdint>

namespace troupe::load {

class random_stream {
 public:
  explicit random_stream(uint64_t seed) : state_(seed) {}
  // An independent stream per (seed, purpose, index): request i is the same request no
  // matter when it is sent or how many came before it.
  random_stream(uint64_t seed, uint64_t purpose, uint64_t index)
      : state_(mix(mix(seed ^ 0x6a09e667f3bcc909ULL) ^ purpose) ^ index) {}

  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix(state_);
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [lo, hi]; the modulo bias is below 2^-40 for the ranges used here.
  int64_t uniform_int(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(next() % span);
  }
  // Exponential with the given mean (Poisson inter-arrival gaps, exponential think time).
  double exponential(double mean) { return -mean * std::log1p(-uniform()); }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

}  // namespace troupe::load
