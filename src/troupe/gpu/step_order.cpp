#include "troupe/gpu/step_order.hpp"

namespace troupe::gpu {

void step_order::swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) {
  if (device_to_host.empty()) return;
  if (has_compute_) ops_.wait(stream_kind::copy, event_kind::kv_written);
  if (has_copies_) ops_.wait(stream_kind::copy, event_kind::copied);
  for (const auto& [device, host] : device_to_host) ops_.swap_block_out(device, host);
  ops_.record(stream_kind::copy, event_kind::swapped_out);
  has_swap_out_ = true;
}

void step_order::copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  if (pairs.empty()) return;
  if (has_swap_out_) ops_.wait(stream_kind::compute, event_kind::swapped_out);
  if (has_swap_in_) ops_.wait(stream_kind::compute, event_kind::swapped_in);
  ops_.copy_blocks(pairs);
  ops_.record(stream_kind::compute, event_kind::copied);
  has_copies_ = true;
}

void step_order::swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) {
  if (host_to_device.empty()) return;
  if (has_compute_) ops_.wait(stream_kind::copy, event_kind::kv_written);
  if (has_copies_) ops_.wait(stream_kind::copy, event_kind::copied);
  for (const auto& [host, device] : host_to_device) ops_.swap_block_in(host, device);
  ops_.record(stream_kind::copy, event_kind::swapped_in);
  has_swap_in_ = true;
}

void step_order::before_compute() {
  if (has_swap_out_) ops_.wait(stream_kind::compute, event_kind::swapped_out);
  if (has_swap_in_) ops_.wait(stream_kind::compute, event_kind::swapped_in);
}

void step_order::after_compute() {
  ops_.record(stream_kind::compute, event_kind::kv_written);
  has_compute_ = true;
  has_swap_out_ = has_copies_ = has_swap_in_ = false;
}

}  // namespace troupe::gpu
