// The order of one step's work on a device's two streams. KV swaps run on the copy stream,
// copy-on-write block copies and the forward pass on the compute stream; CUDA events, never
// device-wide synchronization, order them:
//   swap-out    waits for the compute that last wrote KV (the previous step)
//   block copy  waits for the swap-outs (they read blocks a copy may overwrite)
//   swap-in     waits for the copies (same reason), and follows the swap-outs on its stream
//   compute     waits for the swap-ins it reads and the swap-outs of blocks it may reuse
// Everything is enqueued without blocking the host, which builds and uploads the next
// step's inputs while the copy engine moves blocks. The device is behind device_ops, so
// the ordering is tested on the CPU with a simulated device.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace troupe::gpu {

enum class stream_kind { compute, copy };
enum class event_kind { kv_written, swapped_out, copied, swapped_in };

// The few device calls the ordering needs. Each call is asynchronous on its stream.
class device_ops {
 public:
  virtual ~device_ops() = default;
  virtual void swap_block_out(int32_t device_block, int32_t host_block) = 0;  // copy stream
  virtual void swap_block_in(int32_t host_block, int32_t device_block) = 0;   // copy stream
  virtual void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) = 0;  // compute stream
  virtual void record(stream_kind stream, event_kind event) = 0;
  // Work enqueued on `stream` after this call starts after the last record of `event`.
  virtual void wait(stream_kind stream, event_kind event) = 0;
};

class step_order {
 public:
  explicit step_order(device_ops& ops) : ops_(ops) {}

  void swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host);
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs);
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device);
  // Brackets the forward pass enqueued on the compute stream.
  void before_compute();
  void after_compute();

 private:
  device_ops& ops_;
  bool has_compute_ = false;       // kv_written has been recorded
  bool has_swap_out_ = false;      // swapped_out recorded since the last compute
  bool has_copies_ = false;        // copied recorded since the last compute
  bool has_swap_in_ = false;       // swapped_in recorded since the last compute
};

}  // namespace troupe::gpu
