// Fused dequantize-GEMV for small decode batches: one thread block of 4 warps per output
// row; in each pass the block covers 4 x 1,024 values of the row, thread i dequantizing
// values 8i .. 8i+7 of each 1,024 (dequantize_group8, gpu/math/dequant_group.hpp: the CPU's
// per-block arithmetic) and applying them to every token of the batch. Neighbouring threads
// read neighbouring bytes of the same blocks; four groups per thread are in flight at once;
// and a long row (ffn_down's 8,960 values) is shared by four warps rather than walked by one,
// so every matrix shape keeps enough loads in flight to stream its weights.
#include <cstdint>

#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"
#include "troupe/gpu/math/dequant_group.hpp"

namespace troupe::gpu::kernels {

namespace {

constexpr int warps_per_row = 4;
constexpr int row_threads = 32 * warps_per_row;
constexpr int values_per_pass = 8 * row_threads;  // 1,024
constexpr int groups_per_pass = 4;                // groups in flight per thread

// max_tokens (1, 2, 4 or 8) sizes the accumulators: a one-token decode keeps one, so the
// kernel needs few registers and many warps fit on each multiprocessor.
template <class Block, int max_tokens>
__global__ void __launch_bounds__(row_threads, max_tokens <= 2 ? 8 : 4)
    gemv_kernel(const Block* w, int64_t cols, const float* x, int32_t num_tokens, int64_t rows,
                            float* y) {
  constexpr int n = block_info<Block>::elements;
  const int64_t row = blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const Block* wr = w + row * (cols / n);
  float acc[max_tokens];
#pragma unroll
  for (int t = 0; t < max_tokens; ++t) acc[t] = 0.0f;
  for (int64_t e0 = 8 * threadIdx.x; e0 < cols; e0 += (int64_t)values_per_pass * groups_per_pass) {
    float v[groups_per_pass][8];
#pragma unroll
    for (int u = 0; u < groups_per_pass; ++u) {
      if (e0 + values_per_pass * u < cols) dequantize_group8(wr, e0 + values_per_pass * u, v[u]);
    }
#pragma unroll
    for (int u = 0; u < groups_per_pass; ++u) {
      const int64_t e = e0 + values_per_pass * u;
      if (e >= cols) break;
#pragma unroll
      for (int t = 0; t < max_tokens; ++t) {
        if (t >= num_tokens) break;
        // x rows are 16-byte aligned (checked by gemv()): two vector loads per token.
        const float4* xt = reinterpret_cast<const float4*>(x + t * cols + e);
        const float4 a = xt[0], b = xt[1];
        acc[t] += v[u][0] * a.x + v[u][1] * a.y + v[u][2] * a.z + v[u][3] * a.w + v[u][4] * b.x + v[u][5] * b.y +
                  v[u][6] * b.z + v[u][7] * b.w;
      }
    }
  }
  __shared__ float partial[max_tokens][warps_per_row];
#pragma unroll
  for (int t = 0; t < max_tokens; ++t) {
    if (t >= num_tokens) break;
    const float s = warp_sum(acc[t]);
    if (lane == 0) partial[t][warp] = s;
  }
  __syncthreads();
  if (threadIdx.x < num_tokens) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < warps_per_row; ++k) s += partial[threadIdx.x][k];
    y[threadIdx.x * rows + row] = s;
  }
}

}  // namespace

void gemv(const device_matrix& w, const float* x, int32_t num_tokens, float* y, cudaStream_t stream) {
  if (num_tokens < 1 || num_tokens > max_gemv_tokens) {
    throw error(error_code::internal, "gemv takes 1 to 8 tokens, got " + std::to_string(num_tokens));
  }
  if (w.cols % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0) {
    throw error(error_code::internal, "gemv needs rows of a multiple of 8 values and 16-byte aligned inputs");
  }
  with_block_type(w.type, [&](auto tag) {
    using block = typename decltype(tag)::type;
    const auto* data = static_cast<const block*>(w.data);
    const unsigned grid = (unsigned)w.rows;
    if (num_tokens == 1) {
      gemv_kernel<block, 1><<<grid, row_threads, 0, stream>>>(data, w.cols, x, num_tokens, w.rows, y);
    } else if (num_tokens == 2) {
      gemv_kernel<block, 2><<<grid, row_threads, 0, stream>>>(data, w.cols, x, num_tokens, w.rows, y);
    } else if (num_tokens <= 4) {
      gemv_kernel<block, 4><<<grid, row_threads, 0, stream>>>(data, w.cols, x, num_tokens, w.rows, y);
    } else {
      gemv_kernel<block, 8><<<grid, row_threads, 0, stream>>>(data, w.cols, x, num_tokens, w.rows, y);
    }
  });
  check_launch("gemv");
}

}  // namespace troupe::gpu::kernels
