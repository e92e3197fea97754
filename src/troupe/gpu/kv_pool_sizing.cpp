#include "troupe/gpu/kv_pool_sizing.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe::gpu {

namespace {
std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f MiB", (double)bytes / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

kv_pool_size size_kv_pool(const kv_pool_request& r) {
  if (!(r.gpu_memory_utilization > 0.0 && r.gpu_memory_utilization <= 1.0)) {
    throw error(error_code::invalid_argument, "gpu_memory_utilization must be in (0, 1], got " +
                                                  std::to_string(r.gpu_memory_utilization));
  }
  if (r.bytes_per_block <= 0) throw error(error_code::internal, "bytes_per_block must be positive");
  const int64_t budget = (int64_t)((double)std::max<int64_t>(r.free_bytes, 0) * r.gpu_memory_utilization);
  int64_t blocks = std::min<int64_t>(budget / r.bytes_per_block, INT32_MAX / 2);
  if (r.max_blocks > 0) blocks = std::min<int64_t>(blocks, r.max_blocks);
  if (blocks < std::max(r.min_blocks, 1)) {
    throw error(error_code::context_overflow,
                "out of device memory for the KV cache: " + mib(r.free_bytes) + " free of " + mib(r.total_bytes) +
                    " after the weights (" + mib(r.weight_bytes) + ") and the activation workspace (" +
                    mib(r.activation_peak_bytes) + "); at --gpu-memory-utilization " +
                    std::to_string(r.gpu_memory_utilization) + " that holds " + std::to_string(blocks) +
                    " KV blocks, but one max-length sequence needs " + std::to_string(r.min_blocks) +
                    ". Lower --max-model-len or --max-num-batched-tokens, raise --gpu-memory-utilization, "
                    "or split the model with --tensor-parallel");
  }
  return {(int32_t)blocks, blocks * r.bytes_per_block};
}

}  // namespace troupe::gpu
