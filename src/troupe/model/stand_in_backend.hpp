// A timing stand-in for a model's forward pass, for benchmarks of what is around the step
// (the actor runtime, the router, a fleet of replicas): every step sleeps until a fixed time
// has passed since it began and answers each sampled sequence with a made-up token derived
// from the last token it was fed, never an end-of-generation token; proposed tokens
// (speculative steps) are accepted while each is the token its rule answers there. It computes nothing,
// writes no KV and its outputs are not text anyone should read; it is reached only through
// `--stand-in-step-us`, which says so in its help.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "troupe/model/backend.hpp"

namespace troupe {

class stand_in_backend final : public backend {
 public:
  // config: the real model's (vocabulary size, context); num_blocks KV blocks of block_size
  // tokens are reported for the scheduler to manage (none are allocated). eog_ids: tokens
  // the stand-in never answers with.
  stand_in_backend(model_config config, int32_t num_blocks, int32_t block_size, std::chrono::microseconds step_time,
                   std::vector<int32_t> eog_ids = {});

  const model_config& config() const override { return config_; }
  kv_cache_shape kv_shape() const override { return {num_blocks_, block_size_, 0}; }
  step_result step(const batch_plan& plan) override;
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>&) override {}
  int32_t num_swap_blocks() const override { return 0; }
  bool supports_speculation() const override { return true; }  // by its own rule (step())
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>&) override {}
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>&) override {}

  // The token the stand-in answers after `last` for the sample_index-th sample: a pure
  // function, in [first_token, vocab) and never one of the eog ids.
  int32_t token_after(int32_t last, uint64_t sample_index) const;

  // Time spent inside step(), sleeping included (the sleep overshoots by the timer's slack).
  double busy_seconds() const { return static_cast<double>(busy_ns_.load()) * 1e-9; }
  // The idle time between one step's end and the next one's start since the last call, in
  // microseconds: the median and the 90th percentile. The first step after the call counts
  // from nothing, so it is dropped.
  std::pair<double, double> take_gap_percentiles();

 private:
  model_config config_;
  int32_t num_blocks_;
  int32_t block_size_;
  std::chrono::microseconds step_time_;
  std::vector<int32_t> eog_ids_;
  int32_t first_token_ = 0;
  std::atomic<int64_t> busy_ns_{0};
  std::mutex gaps_mutex_;
  std::vector<int64_t> gaps_ns_;
  std::optional<std::chrono::steady_clock::time_point> last_end_;
};

}  // namespace troupe
