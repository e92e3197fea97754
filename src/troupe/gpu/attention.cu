// Paged attention for decode tokens and prefill chunks alike: one thread block per (row,
// q head). Each warp takes every num_warps-th key; within a warp each lane owns a slice of
// head_dim, the partial q·k of the slices is summed across the warp, and every lane folds
// the score and its slice of v into its online-softmax accumulator. The warps' states are
// merged at the end. The math is gpu/math/attention_math.hpp's, which the CPU test checks
// against the CPU backend's attention.
#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"
#include "troupe/gpu/math/attention_math.hpp"

namespace troupe::gpu::kernels {

namespace {

constexpr int num_warps = 8;  // keys are walked by 8 warps at once: decode attention is latency-bound

template <int dims_per_lane>
__global__ void attention_kernel(const float* q, const int32_t* positions, const int32_t* row_table,
                                 const int32_t* block_tables, int32_t num_heads, int32_t group, const uint16_t* pool,
                                 kv_layout layout, int32_t layer, float scale, float* out) {
  constexpr int head_dim = dims_per_lane * 32;
  const int64_t row = blockIdx.x;
  const int32_t head = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t kv_head = head / group;
  const int64_t q_dim = (int64_t)num_heads * head_dim;
  const float* qr = q + row * q_dim + (int64_t)head * head_dim + lane * dims_per_lane;
  float qh[dims_per_lane], acc[dims_per_lane];
#pragma unroll
  for (int d = 0; d < dims_per_lane; ++d) {
    qh[d] = round_to_fp16(qr[d]);
    acc[d] = 0.0f;
  }
  const int32_t num_keys = positions[row] + 1;
  const int32_t* table = block_tables + row_table[row];
  const int64_t slice = (int64_t)kv_head * head_dim + lane * dims_per_lane;
  online_softmax state;
  for (int32_t j = warp; j < num_keys; j += num_warps) {
    const float partial = attention_dot(qh, pool + layout.index_at(table, layer, 0, j) + slice, dims_per_lane);
    const float score = warp_sum(partial) * scale;
    attention_push(state, score, pool + layout.index_at(table, layer, 1, j) + slice, acc, dims_per_lane);
  }
  __shared__ float shared_m[num_warps], shared_l[num_warps];
  __shared__ float shared_acc[num_warps][head_dim];
  if (lane == 0) {
    shared_m[warp] = state.m;
    shared_l[warp] = state.l;
  }
#pragma unroll
  for (int d = 0; d < dims_per_lane; ++d) shared_acc[warp][lane * dims_per_lane + d] = acc[d];
  __syncthreads();
  if (warp != 0) return;
  for (int w = 1; w < num_warps; ++w) {
    online_softmax other;
    other.m = shared_m[w];
    other.l = shared_l[w];
    attention_merge(state, acc, other, &shared_acc[w][lane * dims_per_lane], dims_per_lane);
  }
  attention_finish(state, acc, dims_per_lane);
  float* o = out + row * q_dim + (int64_t)head * head_dim + lane * dims_per_lane;
#pragma unroll
  for (int d = 0; d < dims_per_lane; ++d) o[d] = acc[d];
}

}  // namespace

void attention(const float* q, const int32_t* positions, const int32_t* row_table, const int32_t* block_tables,
               int32_t num_rows, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim, const uint16_t* pool,
               const kv_layout& layout, int32_t layer, float* out, cudaStream_t stream) {
  if (num_rows == 0) return;
  const dim3 grid((unsigned)num_rows, (unsigned)num_heads);
  const int32_t group = num_heads / num_kv_heads;
  const float scale = 1.0f / std::sqrt((float)head_dim);
  switch (head_dim) {
    case 32:
      attention_kernel<1><<<grid, num_warps * 32, 0, stream>>>(q, positions, row_table, block_tables, num_heads, group,
                                                               pool, layout, layer, scale, out);
      break;
    case 64:
      attention_kernel<2><<<grid, num_warps * 32, 0, stream>>>(q, positions, row_table, block_tables, num_heads, group,
                                                               pool, layout, layer, scale, out);
      break;
    case 128:
      attention_kernel<4><<<grid, num_warps * 32, 0, stream>>>(q, positions, row_table, block_tables, num_heads, group,
                                                               pool, layout, layer, scale, out);
      break;
    case 256:
      attention_kernel<8><<<grid, num_warps * 32, 0, stream>>>(q, positions, row_table, block_tables, num_heads, group,
                                                               pool, layout, layer, scale, out);
      break;
    default:
      throw error(error_code::unsupported,
                  "the CUDA attention kernel takes head_dim 32, 64, 128 or 256, not " + std::to_string(head_dim));
  }
  check_launch("attention");
}

}  // namespace troupe::gpu::kernels
