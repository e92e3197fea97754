// Fused dequantize-GEMV for small decode batches: one warp per output row; in each pass the
// warp covers 4 x 256 values of the row, lane l dequantizing values 8l .. 8l+7 of each 256
// (dequantize_group8, gpu/math/dequant_group.hpp: the CPU's per-block arithmetic) and
// applying them to every token of the batch. Neighbouring lanes read neighbouring bytes of
// the same blocks, so the weights stream through in their compact form once per step.
#include <cstdint>

#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"
#include "troupe/gpu/math/dequant_group.hpp"

namespace troupe::gpu::kernels {

namespace {

constexpr int warps_per_block = 4;

// Groups in flight per lane: their loads are issued together, so each warp keeps several
// blocks' bytes in flight instead of waiting on one at a time (the kernel is latency-bound
// otherwise: a row of 1,536 values is only six passes).
constexpr int groups_per_pass = 4;

template <class Block>
__global__ void gemv_kernel(const Block* w, int64_t rows, int64_t cols, const float* x, int32_t num_tokens,
                            float* y) {
  constexpr int n = block_info<Block>::elements;
  const int64_t row = (int64_t)blockIdx.x * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps leave together
  const Block* wr = w + row * (cols / n);
  float acc[max_gemv_tokens];
#pragma unroll
  for (int t = 0; t < max_gemv_tokens; ++t) acc[t] = 0.0f;
  for (int64_t e0 = 8 * lane; e0 < cols; e0 += 256 * groups_per_pass) {
    float v[groups_per_pass][8];
#pragma unroll
    for (int u = 0; u < groups_per_pass; ++u) {
      if (e0 + 256 * u < cols) dequantize_group8(wr, e0 + 256 * u, v[u]);
    }
#pragma unroll
    for (int u = 0; u < groups_per_pass; ++u) {
      const int64_t e = e0 + 256 * u;
      if (e >= cols) break;
#pragma unroll
      for (int t = 0; t < max_gemv_tokens; ++t) {
        if (t >= num_tokens) break;
        // x rows are 16-byte aligned (checked by gemv()): two vector loads per token.
        const float4* xt = reinterpret_cast<const float4*>(x + t * cols + e);
        const float4 a = xt[0], b = xt[1];
        acc[t] += v[u][0] * a.x + v[u][1] * a.y + v[u][2] * a.z + v[u][3] * a.w + v[u][4] * b.x + v[u][5] * b.y +
                  v[u][6] * b.z + v[u][7] * b.w;
      }
    }
  }
#pragma unroll
  for (int t = 0; t < max_gemv_tokens; ++t) {
    if (t >= num_tokens) break;
    const float s = warp_sum(acc[t]);
    if (lane == 0) y[t * rows + row] = s;
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
    const unsigned grid = (unsigned)((w.rows + warps_per_block - 1) / warps_per_block);
    gemv_kernel<block><<<grid, warps_per_block * 32, 0, stream>>>(static_cast<const block*>(w.data), w.rows, w.cols,
                                                                  x, num_tokens, y);
  });
  check_launch("gemv");
}

}  // namespace troupe::gpu::kernels
