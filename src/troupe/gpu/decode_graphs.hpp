// When a step replays a captured CUDA graph (--cuda-graphs): decode steps only (every
// sequence feeds one token and samples; none wants all logits; at most max_batch of them),
// one graph per batch size, captured once that size has run `steady_steps` decode steps in
// a row (capturing costs several milliseconds: a size seen once while a batch drains is
// not worth it). A graph holds the device addresses of the step's input buffers,
// so when any of them moves (a buffer grew) every graph is dropped and recaptured. Plain
// C++ so the policy is tested without a device.
#pragma once
#include <array>
#include <cstdint>
#include <set>

#include "troupe/model/backend.hpp"

namespace troupe::gpu {

class decode_graph_policy {
 public:
  static constexpr size_t num_buffers = 10;
  using buffer_addresses = std::array<const void*, num_buffers>;

  enum class action { eager, capture, replay };
  struct decision {
    action what = action::eager;
    bool drop_all = false;  // destroy every graph captured so far first
  };

  decode_graph_policy(int32_t max_batch, int32_t max_graphs, int32_t steady_steps = 3)
      : max_batch_(max_batch), max_graphs_(max_graphs), steady_steps_(steady_steps) {}

  static bool is_decode_step(const batch_plan& plan);

  // Called once per step, after the inputs are uploaded (so the addresses are final).
  decision decide(const batch_plan& plan, const buffer_addresses& buffers);

  size_t num_graphs() const { return captured_.size(); }
  // After a failed capture: no graphs from now on.
  void disable() { max_batch_ = 0; captured_.clear(); }

 private:
  int32_t max_batch_, max_graphs_, steady_steps_;
  int32_t last_batch_ = -1, run_length_ = 0;  // consecutive decode steps of the last batch size
  buffer_addresses buffers_{};
  std::set<int32_t> captured_;
};

}  // namespace troupe::gpu
