// How many KV blocks a device gets: gpu_memory_utilization of the memory still free once
// the weights are loaded and the step workspace (the activation peak) is allocated. Plain
// arithmetic on measured numbers, so it is tested without a device.
#pragma once
#include <cstdint>

namespace troupe::gpu {

struct kv_pool_request {
  int64_t total_bytes = 0;              // device memory
  int64_t free_bytes = 0;               // free after weights and workspace
  int64_t weight_bytes = 0;             // for the message
  int64_t activation_peak_bytes = 0;    // measured workspace, for the message
  double gpu_memory_utilization = 0.9;  // share of free_bytes the KV pool may take, (0, 1]
  int64_t bytes_per_block = 0;
  int32_t min_blocks = 1;               // one sequence of max_model_len tokens
  int32_t max_blocks = 0;               // > 0: an explicit cap (tests, --num-blocks)
};

struct kv_pool_size {
  int32_t num_blocks = 0;
  int64_t bytes = 0;
};

// Throws troupe::error(invalid_argument) for a utilization outside (0, 1], and
// error(context_overflow) naming the knobs to turn when fewer than min_blocks fit.
kv_pool_size size_kv_pool(const kv_pool_request& request);

}  // namespace troupe::gpu
