#include "troupe/gpu/decode_graphs.hpp"

namespace troupe::gpu {

bool decode_graph_policy::is_decode_step(const batch_plan& plan) {
  if (plan.sequences.empty()) return false;
  for (const auto& s : plan.sequences) {
    if (s.tokens.size() != 1 || !s.wants_sample || s.wants_all_logits) return false;
  }
  return true;
}

decode_graph_policy::decision decode_graph_policy::decide(const batch_plan& plan, const buffer_addresses& buffers) {
  decision d;
  const auto batch = (int32_t)plan.sequences.size();
  if (!is_decode_step(plan) || batch > max_batch_) {
    last_batch_ = -1;
    run_length_ = 0;
    return d;
  }
  run_length_ = batch == last_batch_ ? run_length_ + 1 : 1;
  last_batch_ = batch;
  if (buffers != buffers_) {
    d.drop_all = !captured_.empty();
    captured_.clear();
    buffers_ = buffers;
  }
  if (captured_.count(batch)) {
    d.what = action::replay;
  } else if ((int32_t)captured_.size() < max_graphs_ && run_length_ >= steady_steps_) {
    captured_.insert(batch);
    d.what = action::capture;
  }
  return d;
}

}  // namespace troupe::gpu
