// Fused dequantize-GEMV for small decode batches: one warp per output row; each lane walks
// a stride of the row's quantized blocks, dequantizes a block once (dequantize_block, the
// CPU's per-block math from model/quant.hpp) and applies it to every token of the batch, so the weights are
// read from memory once per step in their compact form.
#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"

namespace troupe::gpu::kernels {

namespace {

constexpr int warps_per_block = 4;

template <class Block>
__global__ void gemv_kernel(const Block* w, int64_t rows, int64_t cols, const float* x, int32_t num_tokens,
                            float* y) {
  constexpr int n = block_info<Block>::elements;
  const int64_t row = (int64_t)blockIdx.x * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps leave together
  const int64_t blocks_per_row = cols / n;
  const Block* wr = w + row * blocks_per_row;
  float acc[max_gemv_tokens];
#pragma unroll
  for (int t = 0; t < max_gemv_tokens; ++t) acc[t] = 0.0f;
  float tmp[n];
  for (int64_t b = lane; b < blocks_per_row; b += 32) {
    dequantize_block(wr[b], tmp);
#pragma unroll
    for (int t = 0; t < max_gemv_tokens; ++t) {
      if (t >= num_tokens) break;
      const float* xt = x + t * cols + b * n;
      float sum = 0.0f;
      for (int i = 0; i < n; ++i) sum += tmp[i] * xt[i];
      acc[t] += sum;
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
  with_block_type(w.type, [&](auto tag) {
    using block = typename decltype(tag)::type;
    const unsigned grid = (unsigned)((w.rows + warps_per_block - 1) / warps_per_block);
    gemv_kernel<block><<<grid, warps_per_block * 32, 0, stream>>>(static_cast<const block*>(w.data), w.rows, w.cols,
                                                                  x, num_tokens, y);
  });
  check_launch("gemv");
}

}  // namespace troupe::gpu::kernels
