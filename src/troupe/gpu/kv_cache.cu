// Copy-on-write block copies inside the KV pool: one thread block per (src, dst) pair, each
// copying the block's contiguous span (gpu/math/kv_layout.hpp: a block is every layer's K
// and V). Pairs run in parallel, so the caller launches chained pairs (a dst that is a
// later src) one at a time.
#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"

namespace troupe::gpu::kernels {

namespace {

__global__ void copy_blocks_kernel(uint16_t* pool, const int32_t* pairs, int64_t block_elements) {
  const int64_t src = pairs[2 * blockIdx.x], dst = pairs[2 * blockIdx.x + 1];
  const uint16_t* from = pool + src * block_elements;
  uint16_t* to = pool + dst * block_elements;
  for (int64_t i = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; i < block_elements;
       i += (int64_t)gridDim.y * blockDim.x) {
    to[i] = from[i];
  }
}

}  // namespace

void copy_blocks(uint16_t* pool, const int32_t* pairs, int32_t num_pairs, int64_t block_elements,
                 cudaStream_t stream) {
  if (num_pairs == 0) return;
  const dim3 grid((unsigned)num_pairs, 8);
  copy_blocks_kernel<<<grid, 256, 0, stream>>>(pool, pairs, block_elements);
  check_launch("copy_blocks");
}

}  // namespace troupe::gpu::kernels
