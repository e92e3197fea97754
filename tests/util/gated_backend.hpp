// A backend whose steps wait at a gate the test opens: for concurrency tests that must act
// while a request is still running (cancel it, fill the queue behind it, drop its client,
// drain the server) without relying on a model slow enough to give them the time.
//
//   auto b = std::make_shared<test::gated_backend>(inner);  // or a model_config: scripted
//   b->close();                    // steps from now on wait at the gate
//   ... submit a request ...
//   REQUIRE(b->wait_held());       // its first step waits: the scheduler is running it
//   b->release(1);                 // exactly one more step goes through
//   ... act while it runs ...
//   b->open();                     // everything runs to the end
//
// A step that waits longer than gate_timeout throws troupe::error(internal) and sets
// timed_out(), so a test that forgets to open the gate fails instead of hanging. Open the
// gate before destroying an engine that uses this backend: the engine waits for its step.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "troupe/model/backend.hpp"

namespace troupe::test {

class gated_backend : public backend {
 public:
  // Runs the plans on `inner` (e.g. a cpu_backend on the tiny model) once the gate lets
  // them through; its config, KV shape, block copies and swap space are inner's.
  explicit gated_backend(std::shared_ptr<backend> inner,
                         std::chrono::milliseconds gate_timeout = std::chrono::seconds(30));
  // Scripted: no model runs; every sampled sequence gets (last fed token + 1) mod vocab,
  // like tests/actors' scripted_backend. num_blocks blocks of 16 positions, no swap space.
  explicit gated_backend(model_config config, int32_t num_blocks = 256,
                         std::chrono::milliseconds gate_timeout = std::chrono::seconds(30));

  const model_config& config() const override;
  kv_cache_shape kv_shape() const override;
  step_result step(const batch_plan& plan) override;  // waits at the gate first
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override;
  int32_t num_swap_blocks() const override;
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) override;
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) override;
  bool supports_speculation() const override { return inner_ && inner_->supports_speculation(); }
  bool has_draft_model() const override { return inner_ && inner_->has_draft_model(); }

  // The gate starts open.
  void close();            // steps from now on wait (and permits given by release are dropped)
  void open();             // lets every waiting and every later step through
  void release(int n = 1); // while closed, lets n more steps through
  // Waits until a step is waiting at the closed gate (the scheduler has sequences running
  // and cannot move on); false after timeout.
  bool wait_held(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Waits until `n` steps in all have gone through the gate; false after timeout.
  bool wait_steps(int64_t n, std::chrono::milliseconds timeout = std::chrono::seconds(30));

  int64_t num_steps() const;  // steps that went through the gate
  bool is_held() const;       // a step is waiting at the gate now
  bool timed_out() const;     // a step gave up waiting (the gate stayed closed too long)

 private:
  std::shared_ptr<backend> inner_;  // null: scripted
  model_config config_;
  int32_t num_blocks_ = 0;
  std::chrono::milliseconds gate_timeout_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = true;
  int64_t permits_ = 0;
  int num_held_ = 0;
  int64_t num_steps_ = 0;
  bool timed_out_ = false;
};

}  // namespace troupe::test
